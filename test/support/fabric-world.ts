/**
 * FabricWorld: an in-process Fabric peer's world state, enough to run the REAL `sets-registry`
 * chaincode (contracts/fabric/src) and to validate and commit its transactions as a peer would.
 *
 * - `simulate` runs one chaincode function the way a peer's endorser does: it builds a genuine
 *   SignedProposal (@hyperledger/fabric-protos) from the creator, tx id, timestamp and arguments,
 *   hands it to fabric-shim's own ChaincodeStub, and dispatches through fabric-shim's own
 *   contract router (ChaincodeFromContract: "Anchor" and "SetsRegistry:Anchor", parameter
 *   marshalling, beforeTransaction/afterTransaction/unknownTransaction, ClientIdentity built from
 *   the creator). Only the peer side of the shim's handler is emulated here: GetState, PutState,
 *   DelState and GetStateByRange (range and partial-composite-key queries) against COMMITTED state.
 *   The transaction's own writes are invisible to its reads, as on a peer.
 * - A simulation sees one consistent snapshot of committed state (a peer holds the state lock while
 *   simulating): commits that land while it awaits do not leak into it.
 * - `commitBlock` validates like the peer's committer, in block order, later transactions seeing
 *   earlier VALID ones: a changed read version → MVCC_READ_CONFLICT; a range query whose result
 *   (keys or versions) changed → PHANTOM_READ_CONFLICT; otherwise VALID and its writes applied.
 *   setEvent keeps only the last event of a transaction; events of VALID ones are returned.
 * - Blocks: like a channel, block 0 is the (transaction-less) genesis block, so `height` starts at 1
 *   and the first commitBlock is block 1; `height` is always "last block number + 1" (GetChainInfo).
 * - Versions: every VALID transaction gets the next number of a world-wide sequence; each key it
 *   writes carries that number (so a key's version changes whenever it is written, and a deleted and
 *   re-created key never gets an old version back). A read of an absent key records `null`.
 *
 * Not emulated: endorsement policies and signatures, private data, CouchDB rich queries, key-level
 * endorsement, chaincode-to-chaincode calls, the `--init-required` flag (Initialize is an ordinary
 * function here).
 */
import { createHash } from 'crypto';
import * as path from 'path';
import { common, msp, peer } from '@hyperledger/fabric-protos';
import { Timestamp } from 'google-protobuf/google/protobuf/timestamp_pb';

export interface FabricCreator {
  mspId: string;
  /** PEM */
  certificate: string;
}

export interface Simulation {
  /** 200 ok, 500 chaincode error (message = the thrown error's message) */
  status: number;
  message: string;
  /** the transaction's return value (JSON text) when status 200 */
  payload: Buffer;
  event?: { name: string; payload: Buffer };
  /** state key -> committed version read (null = absent) */
  reads: Map<string, number | null>;
  /** range reads, for phantom checks */
  ranges: { start: string; end: string; keys: Map<string, number> }[];
  /** null = delete (the registry never deletes) */
  writes: Map<string, Buffer | null>;
}

export type ValidationCode = 'VALID' | 'MVCC_READ_CONFLICT' | 'PHANTOM_READ_CONFLICT';

export interface CommittedEvent {
  txId: string;
  blockNumber: number;
  chaincodeName: string;
  eventName: string;
  payload: Buffer;
}

// ------------------------------------------------------------------ fabric-shim, loaded once

/** The peer-side handler ChaincodeStub talks to (the subset the stub calls for public state). */
interface PeerHandler {
  handleGetState(collection: string, key: string, channelId: string, txId: string): Promise<Buffer>;
  handlePutState(collection: string, key: string, value: Buffer, channelId: string, txId: string): Promise<Buffer>;
  handleDeleteState(collection: string, key: string, channelId: string, txId: string): Promise<Buffer>;
  handleGetStateByRange(collection: string, startKey: string, endKey: string, channelId: string, txId: string,
    metadata?: Uint8Array): Promise<{ iterator: KvIterator }>;
}

interface KvIterator {
  next(): Promise<{ value?: { namespace: string; key: string; value: Buffer }; done: boolean }>;
  close(): Promise<void>;
}

/** The parts of fabric-shim's ChaincodeStub used here (its constructor is not in the typings). */
interface ShimStub {
  chaincodeEvent?: { getEventName(): string; getPayload_asU8(): Uint8Array };
  getMspID(): string;
}
type ShimStubClass = new (
  handler: PeerHandler, channelId: string, txId: string, input: peer.ChaincodeInput, signedProposal: peer.SignedProposal,
) => ShimStub;

/** fabric-shim's contract router (lib/contract-spi/chaincodefromcontract.js), as the peer runs it. */
interface ChaincodeRouter {
  Invoke(stub: ShimStub): Promise<{ status: number; message?: string; payload?: Uint8Array }>;
}
type ChaincodeRouterClass = new (
  contracts: unknown[], serializers: unknown, metadata: object, title: string, version: string,
) => ChaincodeRouter;

interface Fabric {
  Stub: ShimStubClass;
  Router: ChaincodeRouterClass;
  JSONSerializer: unknown;
  contracts: unknown[];
}

let fabric: Fabric | undefined;

/**
 * Load fabric-shim, fabric-contract-api and the chaincode once. Their loggers are quietened unless
 * CORE_CHAINCODE_LOGGING_LEVEL is set (every expected chaincode error would log otherwise), and the
 * process-wide uncaughtException/unhandledRejection listeners they install on import are removed
 * again, so a test process keeps Node's and mocha's own handling.
 */
function loadFabric(): Fabric {
  if (fabric) return fabric;
  if (process.env.CORE_CHAINCODE_LOGGING_LEVEL === undefined) process.env.CORE_CHAINCODE_LOGGING_LEVEL = 'CRITICAL';
  const beforeExc = process.listeners('uncaughtException');
  const beforeRej = process.listeners('unhandledRejection');
  try {
    /* eslint-disable @typescript-eslint/no-require-imports -- loaded lazily, after the log level is set */
    const Stub = require('fabric-shim/lib/stub') as ShimStubClass;
    const Router = require('fabric-shim/lib/contract-spi/chaincodefromcontract') as ChaincodeRouterClass;
    const { JSONSerializer } = require('fabric-contract-api') as { JSONSerializer: unknown };
    // the chaincode as the root build compiles it: <out>/contracts/fabric/src beside <out>/test/support
    const { contracts } = require(path.join(__dirname, '..', '..', 'contracts', 'fabric', 'src')) as { contracts: unknown[] };
    /* eslint-enable @typescript-eslint/no-require-imports */
    fabric = { Stub, Router, JSONSerializer, contracts };
  } finally {
    for (const l of process.listeners('uncaughtException')) {
      if (!beforeExc.includes(l)) process.removeListener('uncaughtException', l);
    }
    for (const l of process.listeners('unhandledRejection')) {
      if (!beforeRej.includes(l)) process.removeListener('unhandledRejection', l);
    }
  }
  return fabric;
}

// ------------------------------------------------------------------ keys and state

/** Order of keys as the peer's state database sorts them: UTF-8 bytes, i.e. code points. */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // UTF-16 order differs from code-point order only above U+D7FF: surrogates (U+10000 and up)
    // must sort after U+E000..U+FFFF
    if (x >= 0xd800) x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
    if (y >= 0xd800) y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    return x - y;
  }
  return a.length - b.length;
}

interface Entry {
  version: number;
  value: Buffer | null;
}

export class FabricWorld {
  readonly chaincodeName: string;
  readonly channel: string;
  readonly peerMspId: string;
  /** key -> its versions, oldest first (history kept so a simulation reads one snapshot) */
  private readonly state = new Map<string, Entry[]>();
  /** every key ever written, sorted as the state database sorts */
  private readonly keys: string[] = [];
  private readonly committedTx = new Set<string>();
  /** version number of the last VALID transaction */
  private seq = 0;
  private blocks = 1;
  private router: ChaincodeRouter | undefined;

  constructor(opts?: { chaincodeName?: string; channel?: string; peerMspId?: string }) {
    this.chaincodeName = opts?.chaincodeName ?? 'sets-registry';
    this.channel = opts?.channel ?? 'mychannel';
    this.peerMspId = opts?.peerMspId ?? 'Org1MSP';
  }

  /** Blocks on the chain, genesis included: the number the next block will carry. */
  get height(): number {
    return this.blocks;
  }

  /** The committed value of a state key (tests and the gateway may peek), undefined when absent. */
  getState(key: string): Buffer | undefined {
    const e = this.at(key, this.seq);
    return e && e.value ? Buffer.from(e.value) : undefined;
  }

  /** Committed version of a key, null when absent. */
  versionOf(key: string): number | null {
    const e = this.at(key, this.seq);
    return e && e.value ? e.version : null;
  }

  /**
   * Run one chaincode function (name as the client sends it: "Anchor" or "SetsRegistry:Anchor")
   * against COMMITTED state through the real contract class; nothing is applied.
   */
  async simulate(
    creator: FabricCreator,
    txId: string,
    timestamp: { seconds: number; nanos: number },
    fn: string,
    args: string[],
  ): Promise<Simulation> {
    const f = loadFabric();
    if (!this.router) {
      const serializers = { transaction: 'jsonSerializer', serializers: { jsonSerializer: f.JSONSerializer } };
      this.router = new f.Router([...f.contracts], serializers, {}, 'sets-registry-chaincode', '1.0.0');
    }
    const snapshot = this.seq;
    const reads = new Map<string, number | null>();
    const ranges: Simulation['ranges'] = [];
    const writes = new Map<string, Buffer | null>();
    const read = (key: string): Entry | undefined => {
      const e = this.at(key, snapshot);
      const live = e && e.value ? e : undefined;
      if (!reads.has(key)) reads.set(key, live ? live.version : null);
      return live;
    };
    const handler: PeerHandler = {
      handleGetState: async (collection, key) => {
        this.publicOnly(collection);
        const e = read(key);
        return e && e.value ? Buffer.from(e.value) : Buffer.alloc(0);
      },
      handlePutState: async (collection, key, value) => {
        this.publicOnly(collection);
        if (key === '') throw new Error('key must not be an empty string');
        writes.set(key, Buffer.from(value));
        return Buffer.alloc(0);
      },
      handleDeleteState: async (collection, key) => {
        this.publicOnly(collection);
        writes.set(key, null);
        return Buffer.alloc(0);
      },
      handleGetStateByRange: async (collection, startKey, endKey, _c, _t, metadata) => {
        this.publicOnly(collection);
        if (metadata) throw new Error('FabricWorld: paginated range queries are not emulated');
        const found = new Map<string, number>();
        const rows: { namespace: string; key: string; value: Buffer }[] = [];
        for (const key of this.keysIn(startKey, endKey)) {
          const e = this.at(key, snapshot);
          if (!e || !e.value) continue;
          found.set(key, e.version);
          rows.push({ namespace: this.chaincodeName, key, value: Buffer.from(e.value) });
        }
        ranges.push({ start: startKey, end: endKey, keys: found });
        let i = 0;
        const iterator: KvIterator = {
          next: async () => (i < rows.length ? { value: rows[i++], done: false } : { done: true }),
          close: async () => undefined,
        };
        return { iterator };
      },
    };
    const fail = (message: string): Simulation => ({
      status: 500, message, payload: Buffer.alloc(0), reads, ranges, writes: new Map(),
    });
    let stub: ShimStub;
    try {
      const { input, signed } = this.proposal(creator, txId, timestamp, fn, args);
      stub = new f.Stub(handler, this.channel, txId, input, signed);
      // a peer answers with its own MSP id (fabric-shim reads CORE_PEER_LOCALMSPID for that)
      stub.getMspID = () => this.peerMspId;
    } catch (err) {
      return fail(`FabricWorld: bad proposal: ${(err as Error).message}`);
    }
    let res: { status: number; message?: string; payload?: Uint8Array };
    try {
      res = await this.router.Invoke(stub);
    } catch (err) {
      // the router turns chaincode errors into responses; a throw here is a shim-level failure
      return fail((err as Error).message);
    }
    if (res.status !== 200) return fail(res.message ?? '');
    const ev = stub.chaincodeEvent;
    return {
      status: 200,
      message: res.message ?? '',
      payload: Buffer.from(res.payload ?? new Uint8Array()),
      event: ev ? { name: ev.getEventName(), payload: Buffer.from(ev.getPayload_asU8()) } : undefined,
      reads,
      ranges,
      writes,
    };
  }

  /** Validate (MVCC + phantom, in order, later txs see earlier VALID ones) and apply one block. */
  commitBlock(txs: { txId: string; sim: Simulation }[]): {
    blockNumber: number;
    results: { txId: string; code: ValidationCode }[];
    events: CommittedEvent[];
  } {
    // refuse a malformed block before applying anything
    const seen = new Set<string>();
    for (const { txId, sim } of txs) {
      if (!txId) throw new Error('FabricWorld.commitBlock: a transaction has no id');
      if (seen.has(txId) || this.committedTx.has(txId)) throw new Error(`FabricWorld.commitBlock: duplicate transaction id ${txId}`);
      if (sim.status !== 200) throw new Error(`FabricWorld.commitBlock: transaction ${txId} was not endorsed (status ${sim.status}: ${sim.message})`);
      seen.add(txId);
    }
    const blockNumber = this.blocks;
    const results: { txId: string; code: ValidationCode }[] = [];
    const events: CommittedEvent[] = [];
    for (const { txId, sim } of txs) {
      const code = this.validate(sim);
      results.push({ txId, code });
      this.committedTx.add(txId);
      if (code !== 'VALID') continue;
      this.seq += 1;
      for (const [key, value] of sim.writes) this.put(key, value === null ? null : Buffer.from(value), this.seq);
      if (sim.event) {
        events.push({ txId, blockNumber, chaincodeName: this.chaincodeName, eventName: sim.event.name, payload: Buffer.from(sim.event.payload) });
      }
    }
    this.blocks += 1;
    return { blockNumber, results, events };
  }

  // ---------------------------------------------------------------- internals

  private publicOnly(collection: string): void {
    if (collection !== '') throw new Error('FabricWorld: private data collections are not emulated');
  }

  /** The entry of `key` as of version `asOf` (latest with version <= asOf). */
  private at(key: string, asOf: number): Entry | undefined {
    const list = this.state.get(key);
    if (!list) return undefined;
    for (let i = list.length - 1; i >= 0; i--) if (list[i].version <= asOf) return list[i];
    return undefined;
  }

  /** Index of the first key >= `key` in the sorted key list. */
  private lowerBound(key: string): number {
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareKeys(this.keys[mid], key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Keys ever written in [start, end) ("" end = unbounded), in state-database order. */
  private *keysIn(start: string, end: string): Generator<string> {
    for (let i = this.lowerBound(start); i < this.keys.length; i++) {
      const key = this.keys[i];
      if (end !== '' && compareKeys(key, end) >= 0) return;
      yield key;
    }
  }

  private put(key: string, value: Buffer | null, version: number): void {
    let list = this.state.get(key);
    if (!list) {
      list = [];
      this.state.set(key, list);
      this.keys.splice(this.lowerBound(key), 0, key);
    }
    list.push({ version, value });
  }

  private validate(sim: Simulation): ValidationCode {
    for (const [key, version] of sim.reads) {
      if (this.versionOf(key) !== version) return 'MVCC_READ_CONFLICT';
    }
    for (const r of sim.ranges) {
      let count = 0;
      for (const key of this.keysIn(r.start, r.end)) {
        const v = this.versionOf(key);
        if (v === null) continue;
        count += 1;
        if (r.keys.get(key) !== v) return 'PHANTOM_READ_CONFLICT';
      }
      if (count !== r.keys.size) return 'PHANTOM_READ_CONFLICT';
    }
    return 'VALID';
  }

  /** A SignedProposal as a Fabric client would send it (unsigned: signatures are not checked). */
  private proposal(
    creator: FabricCreator,
    txId: string,
    timestamp: { seconds: number; nanos: number },
    fn: string,
    args: string[],
  ): { input: peer.ChaincodeInput; signed: peer.SignedProposal } {
    const identity = new msp.SerializedIdentity();
    identity.setMspid(creator.mspId);
    identity.setIdBytes(Buffer.from(creator.certificate, 'utf8'));
    const signatureHeader = new common.SignatureHeader();
    signatureHeader.setCreator(identity.serializeBinary());
    signatureHeader.setNonce(createHash('sha256').update('nonce:' + txId).digest().subarray(0, 24));

    const ts = new Timestamp();
    ts.setSeconds(timestamp.seconds);
    ts.setNanos(timestamp.nanos);
    const ccId = new peer.ChaincodeID();
    ccId.setName(this.chaincodeName);
    const ext = new peer.ChaincodeHeaderExtension();
    ext.setChaincodeId(ccId);
    const channelHeader = new common.ChannelHeader();
    channelHeader.setType(common.HeaderType.ENDORSER_TRANSACTION);
    channelHeader.setChannelId(this.channel);
    channelHeader.setTxId(txId);
    channelHeader.setTimestamp(ts);
    channelHeader.setExtension$(ext.serializeBinary());
    const header = new common.Header();
    header.setChannelHeader(channelHeader.serializeBinary());
    header.setSignatureHeader(signatureHeader.serializeBinary());

    const input = new peer.ChaincodeInput();
    input.setArgsList([fn, ...args].map((a) => Buffer.from(a, 'utf8')));
    const spec = new peer.ChaincodeSpec();
    spec.setType(peer.ChaincodeSpec.Type.NODE);
    spec.setChaincodeId(ccId);
    spec.setInput(input);
    const invocation = new peer.ChaincodeInvocationSpec();
    invocation.setChaincodeSpec(spec);
    const payload = new peer.ChaincodeProposalPayload();
    payload.setInput(invocation.serializeBinary());

    const proposal = new peer.Proposal();
    proposal.setHeader(header.serializeBinary());
    proposal.setPayload(payload.serializeBinary());
    const signed = new peer.SignedProposal();
    signed.setProposalBytes(proposal.serializeBinary());
    signed.setSignature(new Uint8Array());
    return { input, signed };
  }
}
