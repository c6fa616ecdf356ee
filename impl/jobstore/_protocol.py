"""``JobStore``: LibreChat's ``IJobStore`` with Python names.

Differences from the seed, on purpose:

* Status changes are compare-and-set on the generation: ``update_job`` with
  ``expected_generation`` never touches a replacement turn, and a deleted job is never
  resurrected by a late update.
* ``create_job`` replaces any previous turn's job wholesale (no inherited fields) and
  records ``start_seq``, the stream counter at creation, so the new turn's events are
  told apart from the old turn's by seq as well as by generation id.
* There is no ``append_chunk``: the chunk log is written by the transport's publish
  script, atomically with the seq allocation and the PUBLISH.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from streamcheck.impl._status import JobStatus
from streamcheck.impl._types import JobUpdate, SerializableJobData, UsageMetadata
from streamcheck.model import JSONValue


class ContentSource(Protocol):
    """The live generation graph (held by weak reference): the freshest content."""

    def get_content_parts(self) -> list[JSONValue]: ...

    def get_run_steps(self) -> list[JSONValue]: ...


class JobStore(Protocol):
    async def initialize(self) -> None: ...

    async def create_job(
        self,
        stream_id: str,
        user_id: str,
        conversation_id: str | None = None,
        *,
        generation_id: str,
    ) -> SerializableJobData: ...

    async def get_job(self, stream_id: str) -> SerializableJobData | None: ...

    async def update_job(
        self, stream_id: str, update: JobUpdate, *, expected_generation: str | None = None
    ) -> bool:
        """Apply ``update`` if the job exists (and has ``expected_generation``).

        Returns False when it does not: missing jobs are never re-created. Raises
        ``IllegalTransition`` for a status change the lifecycle table forbids.
        """

    async def delete_job(
        self, stream_id: str, *, expected_generation: str | None = None
    ) -> bool: ...

    async def has_job(self, stream_id: str) -> bool: ...

    async def get_running_jobs(self) -> list[SerializableJobData]: ...

    async def cleanup(self) -> int:
        """Drop expired terminal jobs and stale running ones; return how many."""

    async def get_job_count(self) -> int: ...

    async def get_job_count_by_status(self, status: JobStatus) -> int: ...

    async def destroy(self) -> None: ...

    async def get_active_job_ids_by_user(self, user_id: str) -> list[str]:
        """Running jobs of ``user_id``; prunes stale entries from the user index."""

    def set_graph(self, stream_id: str, graph: ContentSource) -> None: ...

    def set_content_parts(self, stream_id: str, parts: list[JSONValue]) -> None: ...

    async def get_content_parts(self, stream_id: str) -> list[JSONValue] | None: ...

    async def get_run_steps(self, stream_id: str) -> list[JSONValue]: ...

    async def save_run_steps(self, stream_id: str, steps: Sequence[JSONValue]) -> None: ...

    async def clear_content_state(self, stream_id: str) -> None: ...

    def set_collected_usage(self, stream_id: str, usage: Sequence[UsageMetadata]) -> None: ...

    def get_collected_usage(self, stream_id: str) -> list[UsageMetadata]: ...

    async def record_activity(self, stream_id: str, generation_id: str) -> None:
        """Note that the generation is alive (stale-job reaping measures from here)."""
