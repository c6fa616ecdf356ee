"""Canary ``error-not-kept``: LibreChat's errored turn deleted with its job.

The bug (LibreChat before #11372; docs/librechat.md, bug 4): an error was neither
stored on the job nor kept: completing a turn with an error deleted the job, and with
it the chunk log (LibreChat's ``deleteJob``). A client arriving later is refused (the
404, which the history does not record); one caught attaching finds neither log nor
job and ends with "stream lost" instead of the error, without the chunks it was owed.
"""

from __future__ import annotations

from streamcheck.impl import GenerationJob, GenerationJobManager, JobStatus
from streamcheck.properties.canaries._build import Bug


class ForgetsErrors(GenerationJobManager):
    async def _keep_error(self, job: GenerationJob, message: str) -> None:
        pass  # published, never stored

    async def _record_end(self, job: GenerationJob, status: JobStatus, error: str | None) -> None:
        if status is JobStatus.ERROR:
            await self.job_store.delete_job(job.stream_id, expected_generation=job.generation)
            return
        await super()._record_end(job, status, error)


BUG = Bug(manager=(ForgetsErrors,))
