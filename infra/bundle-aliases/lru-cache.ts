// Stands in for mnemonist/lru-cache in the Lambda bundles (an esbuild alias in
// infra/bundling.ts). Its one user is the DynamoDB client's endpoint-discovery cache
// (@aws-sdk/endpoint-cache: get, set, has, peek, clear), which our calls never fill, and
// mnemonist brings ~7 KB with it. A Map keeps insertion order, which is all an LRU needs.
export default class LRUCache<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(private readonly capacity: number) {}

  has(key: K): boolean {
    return this.entries.has(key);
  }

  /** The value, without making it the most recently used. */
  peek(key: K): V | undefined {
    return this.entries.get(key);
  }

  get(key: K): V | undefined {
    if (!this.entries.has(key)) return undefined;
    const value = this.entries.get(key)!;
    this.entries.delete(key);
    this.entries.set(key, value);
    return value;
  }

  set(key: K, value: V): this {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value as K);
    return this;
  }

  clear(): void {
    this.entries.clear();
  }
}
