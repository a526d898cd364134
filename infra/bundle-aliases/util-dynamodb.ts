// Stands in for @aws-sdk/util-dynamodb (3.x) in the Lambda bundles (an esbuild alias in
// infra/bundling.ts): marshall and unmarshall, as the document client (lib-dynamodb) and the
// store call them, with the options they pass (removeUndefinedValues, convertClassInstanceToMap;
// none when unmarshalling). The package's converters also take Sets and binaries of every
// typed-array kind, empty values, wrapped and imprecise numbers and a NumberValue class
// (~4 KB a function); the items here hold strings, safe integers, booleans, null, lists and
// maps. The same refusals where it matters (an unsafe or special number, an undefined value
// without removeUndefinedValues) and a loud one for an option it does not know.
// test/infra/bundle-size.test.ts compares it with the package on items of every kind the
// table holds, and runs the charging functions bundled.
type AttributeValue = Record<string, unknown>;
interface MarshallOptions { removeUndefinedValues?: boolean; convertClassInstanceToMap?: boolean; convertTopLevelContainer?: boolean }
interface UnmarshallOptions { convertWithoutMapWrapper?: boolean }

const KNOWN = new Set(['removeUndefinedValues', 'convertClassInstanceToMap', 'convertTopLevelContainer', 'convertWithoutMapWrapper']);
function checkOptions(options: object | undefined): void {
  for (const [name, value] of Object.entries(options ?? {})) {
    if (value !== undefined && value !== false && !KNOWN.has(name)) throw new Error(`util-dynamodb option ${name} is not bundled (infra/bundle-aliases/util-dynamodb.ts)`);
  }
}

const isBinary = (data: object) => ArrayBuffer.isView(data) || data instanceof ArrayBuffer;
const kept = (value: unknown, options?: MarshallOptions) => typeof value !== 'function' && (value !== undefined || !options?.removeUndefinedValues);

function numberAttr(n: number | bigint): string {
  if (typeof n === 'bigint') return n.toString();
  if (!Number.isFinite(n)) throw new Error(`Special numeric value ${n} is not allowed`);
  if (n > Number.MAX_SAFE_INTEGER || n < Number.MIN_SAFE_INTEGER) throw new Error(`Number ${n} is outside Number.MIN_SAFE_INTEGER..MAX_SAFE_INTEGER. Use NumberValue from @aws-sdk/lib-dynamodb.`);
  return String(n);
}

export function convertToAttr(data: unknown, options?: MarshallOptions): AttributeValue {
  if (data === undefined) throw new Error('Pass options.removeUndefinedValues=true to remove undefined values from map/array/set.');
  if (data === null) return { NULL: true };
  if (typeof data === 'string') return { S: data };
  if (typeof data === 'number' || typeof data === 'bigint') return { N: numberAttr(data) };
  if (typeof data === 'boolean') return { BOOL: data };
  if (typeof data !== 'object') throw new Error(`Unsupported type passed: ${String(data)}`);
  if (Array.isArray(data)) return { L: data.filter((item) => kept(item, options)).map((item) => convertToAttr(item, options)) };
  if (isBinary(data)) return { B: data };
  if (data instanceof Set) {
    const items = [...data].filter((item) => item !== undefined || !options?.removeUndefinedValues);
    if (items.length === 0 || items.includes(undefined)) throw new Error('Pass a non-empty set of defined values');
    if (typeof items[0] === 'string') return { SS: items };
    if (typeof items[0] === 'number' || typeof items[0] === 'bigint') return { NS: items.map((n) => numberAttr(n)) };
    if (isBinary(items[0])) return { BS: items };
    throw new Error('Only Number Set (NS), Binary Set (BS) or String Set (SS) are allowed.');
  }
  const M: AttributeValue = {};
  if (data instanceof Map) {
    for (const [key, value] of data) if (kept(value, options)) M[key] = convertToAttr(value, options);
    return { M };
  }
  if (data.constructor !== Object && data.constructor !== undefined && !options?.convertClassInstanceToMap) {
    throw new Error(`Unsupported type passed: ${String(data)}. Pass options.convertClassInstanceToMap=true to marshall typeof object as map attribute.`);
  }
  // for…in, as the package: enumerable own and inherited keys.
  for (const key in data) {
    const value = (data as Record<string, unknown>)[key];
    if (kept(value, options)) M[key] = convertToAttr(value, options);
  }
  return { M };
}

export function marshall(data: unknown, options?: MarshallOptions): unknown {
  checkOptions(options);
  const attribute = convertToAttr(data, options);
  if (('M' in attribute || 'L' in attribute) && !options?.convertTopLevelContainer) return attribute.M ?? attribute.L;
  return attribute;
}

function nativeNumber(text: string): number | bigint {
  const n = Number(text);
  return (n > Number.MAX_SAFE_INTEGER || n < Number.MIN_SAFE_INTEGER) && Number.isFinite(n) ? BigInt(text) : n;
}

export function convertToNative(data: AttributeValue): unknown {
  for (const [type, value] of Object.entries(data)) {
    if (value === undefined) continue;
    switch (type) {
      case 'NULL': return null;
      case 'BOOL': return Boolean(value);
      case 'N': return nativeNumber(value as string);
      case 'S': case 'B': return value;
      case 'L': return (value as AttributeValue[]).map((item) => convertToNative(item));
      case 'M': return Object.fromEntries(Object.entries(value as Record<string, AttributeValue>).map(([key, item]) => [key, convertToNative(item)]));
      case 'NS': return new Set((value as string[]).map(nativeNumber));
      case 'SS': case 'BS': return new Set(value as unknown[]);
      default: throw new Error(`Unsupported type passed: ${type}`);
    }
  }
  throw new Error(`No value defined: ${JSON.stringify(data)}`);
}

export function unmarshall(data: Record<string, AttributeValue> | AttributeValue, options?: UnmarshallOptions): any {
  checkOptions(options);
  return convertToNative(options?.convertWithoutMapWrapper ? data : { M: data });
}
