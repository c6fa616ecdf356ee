// JSON values, for the JSDoc types of the port (a recursive type needs a declaration file).
export type JSONValue = null | boolean | number | string | JSONValue[] | JSONObject;
export interface JSONObject {
  [key: string]: JSONValue;
}
