// The agent with LibreChat's 500 ms force-flush put back (test/historical.js):
//   streamcheck run --backend redis --impl 'node ports/node/test/agents/force-flush-skips-gap.js'
import { run } from "../../agent.js";
import { forceFlushSkipsGap } from "../historical.js";

forceFlushSkipsGap();
run("streamcheck-node+force-flush-skips-gap");
