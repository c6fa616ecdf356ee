// The agent with LibreChat's subscribe-before-acknowledgement put back (test/historical.js):
//   streamcheck run --backend redis --impl 'node ports/node/test/agents/subscribe-before-ack.js'
import { run } from "../../agent.js";
import { subscribeBeforeAck } from "../historical.js";

subscribeBeforeAck();
run("streamcheck-node+subscribe-before-ack");
