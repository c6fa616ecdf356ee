// Folding chunk events into the message a client shows, as impl/_content.py (LibreChat's
// content aggregator): `on_message_delta` and `on_reasoning_delta` append text to the
// content part at `data.index`; anything else is ignored.

/** @typedef {import("./events.js").JSONValue} JSONValue */
/** @typedef {import("./json.js").JSONObject} JSONObject */

/** @type {Record<string, string>} */
const TEXT_EVENTS = { on_message_delta: "text", on_reasoning_delta: "think" };

/** @param {unknown} value @returns {value is JSONObject} */
const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

/** @param {JSONObject} data */
function deltaText(data) {
  const delta = data.delta;
  if (!isObject(delta)) return "";
  const content = delta.content;
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  let text = "";
  for (const part of content) {
    if (!isObject(part)) continue;
    for (const key of ["text", "think"]) {
      const value = part[key];
      if (typeof value === "string") text += value;
    }
  }
  return text;
}

/** Content parts `[{type: "text", text: ...}, ...]` in index order.
 * @param {Iterable<JSONValue>} events
 * @returns {JSONObject[]} */
export function aggregateContent(events) {
  /** @type {Map<number, JSONObject>} */
  const parts = new Map();
  for (const event of events) {
    if (!isObject(event)) continue;
    const partType = TEXT_EVENTS[String(event.event)];
    const data = event.data;
    if (partType === undefined || !isObject(data)) continue;
    const index = data.index ?? 0;
    if (!Number.isSafeInteger(index) || typeof index !== "number" || index < 0) continue;
    let part = parts.get(index);
    if (part === undefined) {
      part = { type: partType, [partType]: "" };
      parts.set(index, part);
    }
    const previous = part[partType];
    part[partType] = (typeof previous === "string" ? previous : "") + deltaText(data);
  }
  return [...parts.keys()].sort((a, b) => a - b).map((i) => /** @type {JSONObject} */ (parts.get(i)));
}
