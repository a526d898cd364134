// Stands in for @smithy/core/checksum in the Lambda bundles (an esbuild alias in
// infra/bundling.ts). The DynamoDB and EventBridge clients take one thing from it, `Sha256`
// (SigV4 signing and payload hashes), which on Node is a wrapper of node:crypto; the
// package's module also carries a pure-JavaScript SHA-256 (~3.3 KB) that it falls back to
// only where node:crypto has no sha256, which no Lambda runtime lacks. This is the
// package's Node class (@smithy/core 3.41, checksum/sha256/Sha256Node.js), without the
// fallback. Any other import from @smithy/core/checksum fails the build loudly.
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';

type SourceData = string | ArrayBuffer | ArrayBufferView;

function toBuffer(data: SourceData): string | Buffer {
  if (typeof data === 'string') return data;
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

export class Sha256 {
  readonly digestLength = 32;
  private hash: Hash | Hmac;
  private readonly isHmac: boolean;
  private finished = false;

  constructor(private readonly secret?: SourceData) {
    this.isHmac = !!secret;
    this.hash = this.createHash();
  }

  update(data: SourceData): void {
    if (this.finished) throw new Error('Attempted to update an already finished hash.');
    this.hash.update(data as string | NodeJS.ArrayBufferView); // as the package's class: no conversion
  }

  async digest(): Promise<Uint8Array> {
    let buf: Buffer;
    if (this.isHmac) {
      this.finished = true;
      buf = this.hash.digest();
    } else {
      buf = (this.hash as Hash).copy().digest();
    }
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  reset(): void {
    this.hash = this.createHash();
    this.finished = false;
  }

  private createHash(): Hash | Hmac {
    return this.secret ? createHmac('sha256', toBuffer(this.secret)) : createHash('sha256');
  }
}

export { Sha256 as Sha256Node };
