/**
 * In-process Fabric Gateway emulator (issue 12): a @grpc/grpc-js server implementing the
 * `gateway.Gateway` service of @hyperledger/fabric-protos (Evaluate, Endorse, Submit, CommitStatus,
 * ChaincodeEvents) the way a Fabric 2.5 peer's gateway answers it, around FabricWorld (the state
 * engine that runs the REAL chaincode class), so that the UNMODIFIED @hyperledger/fabric-gateway
 * client talks to it exactly as to a peer.
 *
 * What it does like a peer (messages and gRPC codes taken from fabric's internal/pkg/gateway and
 * core/endorser):
 * - decodes SignedProposal -> Proposal -> Header (ChannelHeader: type, tx id, channel, timestamp;
 *   SignatureHeader: creator SerializedIdentity{mspid, id_bytes}, nonce) -> ChaincodeProposalPayload
 *   -> ChaincodeInvocationSpec (chaincode name, args) and runs FabricWorld.simulate;
 * - checks tx id = hex(sha256(nonce + creator)), the channel header type, the channel and chaincode
 *   names, that the proposal / prepared transaction carry a signature (non-empty), and duplicate tx
 *   ids (a proposal whose tx id is already in the ledger is refused; a second envelope with a
 *   committed or same-block tx id commits as DUPLICATE_TXID and the first status stands);
 * - Endorse returns a real prepared Envelope: ProposalResponsePayload{proposal_hash, ChaincodeAction{
 *   results = TxReadWriteSet/KVRWSet (reads with versions, range queries with raw reads, writes),
 *   events = ChaincodeEvent, response, chaincode_id}} with one Endorsement signed (ECDSA/SHA-256) by a
 *   throwaway peer identity; the client signs it and Submits;
 * - Submit queues the envelope; blocks are cut `blockMs` after the first queued transaction (the
 *   orderer's BatchTimeout) and committed through FabricWorld.commitBlock (MVCC + phantom checks);
 *   an envelope that is not byte-for-byte the one this gateway endorsed commits as
 *   ENDORSEMENT_POLICY_FAILURE;
 * - CommitStatus blocks until the transaction is committed and answers TxValidationCode + block;
 * - ChaincodeEvents streams one ChaincodeEventsResponse per block holding events of VALID
 *   transactions of the requested chaincode, from start_position (next_commit/unset = ledger
 *   height, specified = that block; newest/oldest are INVALID_ARGUMENT as on the peer), skipping up
 *   to and including after_transaction_id (checkpoints);
 * - errors: a chaincode error (status >= 400) -> Endorse ABORTED "failed to endorse transaction, see
 *   attached details for more info" with ErrorDetail{address, mspId, message: "chaincode response
 *   500, <msg>"}; Evaluate UNKNOWN "evaluate call to endorser returned error: chaincode response
 *   500, <msg>" with the same detail; unknown channel or chaincode -> FAILED_PRECONDITION "no peers
 *   available to evaluate chaincode X in channel Y" (Evaluate) / "no combination of peers can be
 *   derived which satisfy the endorsement policy: No metadata was found for chaincode X in channel
 *   Y" (Endorse), NOT_FOUND for ChaincodeEvents; more than `maxConcurrent` calls in progress on the
 *   service (streams and CommitStatus waits count, as on the peer) -> UNKNOWN "too many requests for
 *   /gateway.Gateway, exceeding concurrency limit (N)" — a real 2.4/2.5 peer's limiter returns a
 *   plain Go error, which gRPC sends as UNKNOWN, not RESOURCE_EXHAUSTED (fabric issue #4023:
 *   "EndorseError: 2 UNKNOWN: too many requests for /gateway.Gateway ...").
 *
 * What it does NOT do — say so wherever a test relies on it:
 * - signatures are NOT verified (only required to be present), creators are NOT validated against
 *   any MSP, channel ACLs and endorsement policies are NOT checked, there is one peer and one org;
 * - read versions in the KVRWSet are FabricWorld's per-key version numbers carried in
 *   Version.block_num (tx_num 0), not real (block, tx) heights; the committed envelope is matched
 *   to the simulation kept at endorsement time rather than re-derived from the envelope;
 * - no Deliver service (block events), no private data, no discovery service, no system chaincodes;
 * - blocks committed on `world` directly (not through Submit) count in the height but have no
 *   transactions or events for CommitStatus / ChaincodeEvents.
 *
 * pause()/resume() cut every connection and refuse new ones (clients see UNAVAILABLE, open streams
 * end) while blocks keep being cut — the peer is unreachable, the ordering service is not.
 * pause({ hang: true }) instead keeps connections up but answers nothing (calls run into their
 * deadline: DEADLINE_EXCEEDED; event streams go quiet) until resume() — a stuck peer.
 */
import * as crypto from 'crypto';
import * as grpc from '@grpc/grpc-js';
import { common, gateway, ledger, msp, orderer, peer, google } from '@hyperledger/fabric-protos';
import { Any } from 'google-protobuf/google/protobuf/any_pb';
import { connect, hash, signers, type ConnectOptions, type Gateway } from '@hyperledger/fabric-gateway';
import { FabricWorld, type FabricCreator, type Simulation, type ValidationCode } from './fabric-world';
import { makeIdentity, makeTlsServer, type FabricTestIdentity } from './fabric-pki';
import { startTcpProxy, type TcpProxy } from './tcp-proxy';

export interface FabricGatewayOptions {
  /** serve TLS (server cert for `serverName`, signed by a throwaway CA); default false */
  tls?: boolean;
  /** batch timeout: a block is cut this long after the first queued transaction; default 100 */
  blockMs?: number;
  /** the one channel the peer has joined; default "mychannel" */
  channel?: string;
  /** the one chaincode defined on it; default "sets-registry" */
  chaincode?: string;
  /** concurrent calls on the Gateway service before refusing (peer.limits.concurrency.gatewayService); default 500 */
  maxConcurrent?: number;
  /** most transactions per block (the orderer's MaxMessageCount); default unlimited */
  maxTxPerBlock?: number;
  /** the peer's MSP (ErrorDetail.mspId, endorser identity); default "Org1MSP" */
  peerMspId?: string;
  /** the name in the TLS server certificate; default "peer0.org1.example.com" */
  serverName?: string;
}

/** What connect() needs of an identity (a fabric-pki FabricTestIdentity has it). */
export type GatewayClientIdentity = Pick<FabricTestIdentity, 'mspId' | 'certificate' | 'privateKey'>;
export type { FabricTestIdentity };

export interface FabricGatewayHandle {
  /** host:port to dial (127.0.0.1:<free port>) */
  endpoint: string;
  /** PEM of the CA that signed the server certificate (tls only) */
  tlsCaCert?: string;
  /** the name to verify the server certificate against (tls only) */
  serverNameOverride?: string;
  channel: string;
  chaincode: string;
  peerMspId: string;
  world: FabricWorld;
  /** shut down for good (idempotent): connections cut, waiting calls ended */
  stop(): Promise<void>;
  /**
   * stop answering until resume(): cut every connection and refuse new ones (UNAVAILABLE); with
   * `hang: true` keep connections but answer nothing (DEADLINE_EXCEEDED at the caller's deadline)
   */
  pause(opts?: { hang?: boolean }): Promise<void>;
  resume(): Promise<void>;
  /** cut every open connection (and so every stream) once, then accept again */
  cutConnections(): Promise<void>;
  /** a throwaway client identity of `mspId` (default the peer's MSP), made with openssl (fabric-pki) */
  identity(opts: { cn: string; mspId?: string; attrs?: Record<string, string> }): FabricTestIdentity;
  /** a gRPC client for this gateway with the right credentials (TLS or insecure) */
  grpcClient(opts?: { serverNameOverride?: string }): grpc.Client;
  /** the unmodified fabric-gateway client connected as `id` (close() it; the grpc client is closed with it unless given) */
  connect(id: GatewayClientIdentity, opts?: Partial<ConnectOptions>): Gateway;
  /** committed status of a transaction, if committed */
  txStatus(txId: string): { code: number; blockNumber: number } | undefined;
  /** ledger height: the number the next block will carry (a NextCommit start) */
  readonly height: number;
  readonly stats: { active: number; rejected: number; blocks: number; submitted: number };
}

const TX = peer.TxValidationCode;
const VALIDATION_CODES: Record<ValidationCode, number> = {
  VALID: TX.VALID,
  MVCC_READ_CONFLICT: TX.MVCC_READ_CONFLICT,
  PHANTOM_READ_CONFLICT: TX.PHANTOM_READ_CONFLICT,
};

/** A gRPC error the way the peer's gateway builds it (status + google.rpc.Status details). */
class GatewayFault extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
    readonly details: gateway.ErrorDetail[] = [],
  ) {
    super(message);
  }

  toServiceError(): Partial<grpc.StatusObject> & Error {
    const metadata = new grpc.Metadata();
    if (this.details.length > 0) {
      const st = new google.rpc.Status();
      st.setCode(this.code);
      st.setMessage(this.message);
      st.setDetailsList(
        this.details.map((d) => {
          const any = new Any();
          any.pack(d.serializeBinary(), 'gateway.ErrorDetail');
          return any;
        }),
      );
      metadata.set('grpc-status-details-bin', Buffer.from(st.serializeBinary()));
    }
    return Object.assign(new Error(this.message), { code: this.code, details: this.message, metadata });
  }
}

interface DecodedProposal {
  txId: string;
  channel: string;
  chaincode: string;
  fn: string;
  args: string[];
  creator: FabricCreator;
  creatorBytes: Uint8Array;
  timestamp: { seconds: number; nanos: number };
  header: common.Header;
  channelHeaderBytes: Uint8Array;
  signatureHeaderBytes: Uint8Array;
  /** the ChaincodeProposalPayload without its transient map, serialized (what goes into the tx) */
  ccppNoTransient: Uint8Array;
  signed: boolean;
  headerType: number;
  expectedTxId: string;
}

interface Endorsed {
  sim: Simulation;
  payload: Buffer;
  at: number;
}

interface BlockRecord {
  number: number;
  txs: { txId: string; code: number; event?: { name: string; payload: Buffer } }[];
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const sha256 = (...parts: Uint8Array[]) => {
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

function decodeProposal(signed: peer.SignedProposal | undefined): DecodedProposal {
  const bytes = signed?.getProposalBytes_asU8() ?? new Uint8Array(0);
  if (!signed || bytes.length === 0) throw new Error('a signed proposal is required');
  const proposal = peer.Proposal.deserializeBinary(bytes);
  const header = common.Header.deserializeBinary(proposal.getHeader_asU8());
  const channelHeaderBytes = header.getChannelHeader_asU8();
  const signatureHeaderBytes = header.getSignatureHeader_asU8();
  const chdr = common.ChannelHeader.deserializeBinary(channelHeaderBytes);
  const shdr = common.SignatureHeader.deserializeBinary(signatureHeaderBytes);
  const ccpp = peer.ChaincodeProposalPayload.deserializeBinary(proposal.getPayload_asU8());
  const spec = peer.ChaincodeInvocationSpec.deserializeBinary(ccpp.getInput_asU8());
  const channel = chdr.getChannelId();
  if (!channel) throw new Error('no channel id provided');
  const ccSpec = spec.getChaincodeSpec();
  if (!ccSpec) throw new Error(`no chaincode spec is provided, channel id [${channel}]`);
  const ccId = ccSpec.getChaincodeId();
  if (!ccId) throw new Error(`no chaincode id is provided, channel id [${channel}]`);
  if (!ccId.getName()) throw new Error(`no chaincode name is provided, channel id [${channel}]`);
  const argBytes = ccSpec.getInput()?.getArgsList_asU8() ?? [];
  const args = argBytes.map((a) => Buffer.from(a).toString('utf8'));
  const creatorBytes = shdr.getCreator_asU8();
  const identity = msp.SerializedIdentity.deserializeBinary(creatorBytes);
  const ts = chdr.getTimestamp();
  const noTransient = new peer.ChaincodeProposalPayload();
  noTransient.setInput(ccpp.getInput_asU8());
  return {
    txId: chdr.getTxId(),
    channel,
    chaincode: ccId.getName(),
    fn: args[0] ?? '',
    args: args.slice(1),
    creator: { mspId: identity.getMspid(), certificate: Buffer.from(identity.getIdBytes_asU8()).toString('utf8') },
    creatorBytes,
    timestamp: { seconds: ts?.getSeconds() ?? 0, nanos: ts?.getNanos() ?? 0 },
    header,
    channelHeaderBytes,
    signatureHeaderBytes,
    ccppNoTransient: noTransient.serializeBinary(),
    signed: signed.getSignature_asU8().length > 0,
    headerType: chdr.getType(),
    expectedTxId: hex(sha256(shdr.getNonce_asU8(), creatorBytes)),
  };
}

function encodeRwset(namespace: string, sim: Simulation): Uint8Array {
  const kv = ledger.rwset.kvrwset;
  const set = new kv.KVRWSet();
  const kvRead = (key: string, version: number | null | undefined) => {
    const r = new kv.KVRead();
    r.setKey(key);
    if (version !== null && version !== undefined) {
      const v = new kv.Version();
      v.setBlockNum(version);
      v.setTxNum(0);
      r.setVersion(v);
    }
    return r;
  };
  for (const key of [...sim.reads.keys()].sort()) set.addReads(kvRead(key, sim.reads.get(key)));
  for (const range of sim.ranges) {
    const info = new kv.RangeQueryInfo();
    info.setStartKey(range.start);
    info.setEndKey(range.end);
    info.setItrExhausted(true);
    const raw = new kv.QueryReads();
    raw.setKvReadsList([...range.keys.entries()].map(([k, v]) => kvRead(k, v)));
    info.setRawReads(raw);
    set.addRangeQueriesInfo(info);
  }
  for (const key of [...sim.writes.keys()].sort()) {
    const value = sim.writes.get(key);
    const w = new kv.KVWrite();
    w.setKey(key);
    w.setIsDelete(value === null || value === undefined);
    if (value) w.setValue(value);
    set.addWrites(w);
  }
  const ns = new ledger.rwset.NsReadWriteSet();
  ns.setNamespace(namespace);
  ns.setRwset(set.serializeBinary());
  const tx = new ledger.rwset.TxReadWriteSet();
  tx.setDataModel(ledger.rwset.TxReadWriteSet.DataModel.KV);
  tx.setNsRwsetList([ns]);
  return tx.serializeBinary();
}

class Emulator {
  readonly channel: string;
  readonly chaincode: string;
  readonly peerMspId: string;
  readonly blockMs: number;
  readonly maxConcurrent: number;
  readonly maxTxPerBlock: number;
  address = '';
  active = 0;
  rejected = 0;
  submitted = 0;
  blocksCut = 0;
  stopped = false;

  /** tx id -> the envelopes endorsed for it (a proposal may be endorsed more than once; each is valid) */
  private readonly endorsed = new Map<string, Endorsed[]>();
  private readonly queue: { txId: string; payload: Buffer }[] = [];
  private cutTimer: NodeJS.Timeout | undefined;
  private readonly statuses = new Map<string, { code: number; blockNumber: number }>();
  private readonly statusWaiters = new Map<string, Set<() => void>>();
  private readonly blocks = new Map<number, BlockRecord>();
  private readonly txBlock = new Map<string, number>();
  private readonly blockListeners = new Set<() => void>();
  private readonly closers = new Set<() => void>();
  /** while set (pause({hang: true})), calls wait on it and streams deliver nothing */
  private hung: { promise: Promise<void>; release: () => void } | undefined;
  /** ledger height (the next block's number): FabricWorld's, so blocks committed on it directly count */
  get height(): number {
    return this.world.height;
  }

  constructor(
    readonly world: FabricWorld,
    opts: Required<Pick<FabricGatewayOptions, 'channel' | 'chaincode' | 'peerMspId' | 'blockMs' | 'maxConcurrent' | 'maxTxPerBlock'>>,
    private readonly peerIdentity: GatewayClientIdentity,
  ) {
    this.channel = opts.channel;
    this.chaincode = opts.chaincode;
    this.peerMspId = opts.peerMspId;
    this.blockMs = opts.blockMs;
    this.maxConcurrent = opts.maxConcurrent;
    this.maxTxPerBlock = opts.maxTxPerBlock;
  }

  private detail(message: string): gateway.ErrorDetail {
    const d = new gateway.ErrorDetail();
    d.setAddress(this.address);
    d.setMspId(this.peerMspId);
    d.setMessage(message);
    return d;
  }

  txStatus(txId: string) {
    return this.statuses.get(txId);
  }

  // ---- service implementation -------------------------------------------------------------------

  service(): grpc.UntypedServiceImplementation {
    const unary =
      <Req, Res>(fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>): grpc.handleUnaryCall<Req, Res> =>
      (call, callback) => {
        const release = this.acquire();
        if (!release) {
          callback(this.limitFault().toServiceError());
          return;
        }
        call.once('cancelled', release);
        // a handler that throws before its first await must still answer with its fault
        (this.hung?.promise ?? Promise.resolve())
          .then(() => fn(call.request, call))
          .then(
            (res) => {
              release();
              callback(null, res);
            },
            (err: unknown) => {
              release();
              callback(this.toFault(err).toServiceError());
            },
          );
      };
    return {
      evaluate: unary((req: gateway.EvaluateRequest) => this.evaluate(req)),
      endorse: unary((req: gateway.EndorseRequest) => this.endorse(req)),
      submit: unary((req: gateway.SubmitRequest) => this.submit(req)),
      commitStatus: unary((req: gateway.SignedCommitStatusRequest, call) => this.commitStatus(req, call)),
      chaincodeEvents: (call: grpc.ServerWritableStream<gateway.SignedChaincodeEventsRequest, gateway.ChaincodeEventsResponse>) =>
        this.chaincodeEvents(call),
    };
  }

  /** a slot of the concurrency limit, or undefined when all are taken; the release is idempotent */
  private acquire(): (() => void) | undefined {
    if (this.active >= this.maxConcurrent) {
      this.rejected++;
      return undefined;
    }
    this.active++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.active--;
    };
  }

  private limitFault() {
    return new GatewayFault(
      grpc.status.UNKNOWN,
      `too many requests for /gateway.Gateway, exceeding concurrency limit (${this.maxConcurrent})`,
    );
  }

  private toFault(err: unknown): GatewayFault {
    if (err instanceof GatewayFault) return err;
    // an emulator bug or a FabricWorld failure: say so rather than pretend it is a peer answer
    const msg = err instanceof Error ? err.message : String(err);
    return new GatewayFault(grpc.status.INTERNAL, `fabric-gateway emulator: ${msg}`);
  }

  /** decode + the checks the endorser's preProcess makes; returns the peer-side failure message, if any */
  private check(p: DecodedProposal): string | undefined {
    if (p.headerType !== common.HeaderType.ENDORSER_TRANSACTION) return `invalid header type ${p.headerType}`;
    if (!p.signed) return 'access denied: the proposal is not signed';
    if (!p.txId) return 'invalid txID. It must be different from the empty string';
    if (p.txId !== p.expectedTxId) return `invalid txID. got [${p.txId}], expected [${p.expectedTxId}]`;
    if (this.statuses.has(p.txId)) {
      return `duplicate transaction found [${p.txId}]. Creator [${hex(p.creatorBytes)}]`;
    }
    return undefined;
  }

  private knows(channel: string, chaincode: string) {
    return channel === this.channel && chaincode === this.chaincode;
  }

  private async evaluate(req: gateway.EvaluateRequest): Promise<gateway.EvaluateResponse> {
    let p: DecodedProposal;
    try {
      p = decodeProposal(req.getProposedTransaction());
    } catch (err) {
      throw new GatewayFault(grpc.status.INVALID_ARGUMENT, `failed to unpack transaction proposal: ${(err as Error).message}`);
    }
    if (!this.knows(p.channel, p.chaincode)) {
      throw new GatewayFault(
        grpc.status.FAILED_PRECONDITION,
        `no peers available to evaluate chaincode ${p.chaincode} in channel ${p.channel}`,
      );
    }
    const bad = this.check(p);
    if (bad) {
      throw new GatewayFault(grpc.status.FAILED_PRECONDITION, `evaluate call to endorser returned error: ${bad}`, [this.detail(bad)]);
    }
    const sim = await this.simulate(p, 'evaluate');
    if (sim.status < 200 || sim.status >= 400) {
      const msg = `chaincode response ${sim.status}, ${sim.message}`;
      throw new GatewayFault(grpc.status.UNKNOWN, `evaluate call to endorser returned error: ${msg}`, [this.detail(msg)]);
    }
    const response = new peer.Response();
    response.setStatus(sim.status);
    response.setMessage(sim.message);
    response.setPayload(sim.payload);
    const res = new gateway.EvaluateResponse();
    res.setResult(response);
    return res;
  }

  /** FabricWorld.simulate; a throw is a peer-side failure (500 without payload), as when a chaincode container dies */
  private async simulate(p: DecodedProposal, what: 'evaluate' | 'endorse'): Promise<Simulation> {
    try {
      return await this.world.simulate(p.creator, p.txId, p.timestamp, p.fn, p.args);
    } catch (err) {
      const msg = `error in simulation: ${(err as Error).message}`;
      throw new GatewayFault(
        grpc.status.ABORTED,
        what === 'evaluate'
          ? 'failed to evaluate transaction, see attached details for more info'
          : 'failed to endorse transaction, see attached details for more info',
        [this.detail(msg)],
      );
    }
  }

  private async endorse(req: gateway.EndorseRequest): Promise<gateway.EndorseResponse> {
    let p: DecodedProposal;
    try {
      p = decodeProposal(req.getProposedTransaction());
    } catch (err) {
      throw new GatewayFault(grpc.status.INVALID_ARGUMENT, (err as Error).message);
    }
    const orgs = req.getEndorsingOrganizationsList();
    const missing = orgs.filter((o) => o !== this.peerMspId);
    if (missing.length > 0) {
      throw new GatewayFault(grpc.status.UNAVAILABLE, `failed to find any endorsing peers for org(s): ${missing.join(', ')}`);
    }
    if (!this.knows(p.channel, p.chaincode)) {
      throw new GatewayFault(
        grpc.status.FAILED_PRECONDITION,
        `no combination of peers can be derived which satisfy the endorsement policy: No metadata was found for chaincode ${p.chaincode} in channel ${p.channel}`,
      );
    }
    const failed = (msg: string) =>
      new GatewayFault(grpc.status.ABORTED, 'failed to endorse transaction, see attached details for more info', [this.detail(msg)]);
    const bad = this.check(p);
    if (bad) throw failed(bad);
    const sim = await this.simulate(p, 'endorse');
    if (sim.status < 200 || sim.status >= 400) throw failed(`chaincode response ${sim.status}, ${sim.message}`);

    // ProposalResponsePayload{proposal_hash, extension = ChaincodeAction}
    const response = new peer.Response();
    response.setStatus(sim.status);
    response.setMessage(sim.message);
    response.setPayload(sim.payload);
    const ccId = new peer.ChaincodeID();
    ccId.setName(this.chaincode);
    ccId.setVersion('1.0');
    const action = new peer.ChaincodeAction();
    action.setResults(encodeRwset(this.chaincode, sim));
    if (sim.event) {
      const ev = new peer.ChaincodeEvent();
      ev.setChaincodeId(this.chaincode);
      ev.setTxId(p.txId);
      ev.setEventName(sim.event.name);
      ev.setPayload(sim.event.payload);
      action.setEvents(ev.serializeBinary());
    }
    action.setResponse(response);
    action.setChaincodeId(ccId);
    const prp = new peer.ProposalResponsePayload();
    prp.setProposalHash(sha256(p.channelHeaderBytes, p.signatureHeaderBytes, p.ccppNoTransient));
    prp.setExtension$(action.serializeBinary());
    const prpBytes = prp.serializeBinary();

    // one endorsement by the (throwaway) peer identity
    const endorser = new msp.SerializedIdentity();
    endorser.setMspid(this.peerMspId);
    endorser.setIdBytes(Buffer.from(this.peerIdentity.certificate));
    const endorserBytes = endorser.serializeBinary();
    const endorsement = new peer.Endorsement();
    endorsement.setEndorser(endorserBytes);
    endorsement.setSignature(crypto.sign('sha256', Buffer.concat([prpBytes, endorserBytes]), this.peerIdentity.privateKey));
    const endorsed = new peer.ChaincodeEndorsedAction();
    endorsed.setProposalResponsePayload(prpBytes);
    endorsed.setEndorsementsList([endorsement]);

    // the transaction as the gateway's prepareTransaction assembles it
    const cap = new peer.ChaincodeActionPayload();
    cap.setChaincodeProposalPayload(p.ccppNoTransient);
    cap.setAction(endorsed);
    const txAction = new peer.TransactionAction();
    txAction.setHeader(p.signatureHeaderBytes);
    txAction.setPayload(cap.serializeBinary());
    const tx = new peer.Transaction();
    tx.setActionsList([txAction]);
    const payload = new common.Payload();
    payload.setHeader(p.header);
    payload.setData(tx.serializeBinary());
    const payloadBytes = Buffer.from(payload.serializeBinary());
    const envelope = new common.Envelope();
    envelope.setPayload(payloadBytes);

    const list = this.endorsed.get(p.txId) ?? [];
    list.push({ sim, payload: payloadBytes, at: Date.now() });
    this.endorsed.set(p.txId, list);
    const res = new gateway.EndorseResponse();
    res.setPreparedTransaction(envelope);
    return res;
  }

  private async submit(req: gateway.SubmitRequest): Promise<gateway.SubmitResponse> {
    const env = req.getPreparedTransaction();
    if (!env) throw new GatewayFault(grpc.status.INVALID_ARGUMENT, 'a prepared transaction is required');
    if (env.getSignature_asU8().length === 0) {
      throw new GatewayFault(grpc.status.INVALID_ARGUMENT, 'prepared transaction must be signed');
    }
    if (req.getChannelId() !== this.channel) {
      throw new GatewayFault(grpc.status.FAILED_PRECONDITION, `channel '${req.getChannelId()}' not found`);
    }
    const payload = Buffer.from(env.getPayload_asU8());
    let txId: string;
    try {
      const header = common.Payload.deserializeBinary(payload).getHeader();
      if (!header) throw new Error('missing header');
      const chdr = common.ChannelHeader.deserializeBinary(header.getChannelHeader_asU8());
      if (chdr.getChannelId() !== this.channel) throw new Error(`channel '${chdr.getChannelId()}' is not the request's`);
      txId = chdr.getTxId();
      if (!txId) throw new Error('empty tx id');
    } catch (err) {
      // what the orderer's message processor answers for an envelope it cannot parse
      throw new GatewayFault(
        grpc.status.ABORTED,
        `received unsuccessful response from orderer: status=BAD_REQUEST, info=${(err as Error).message}`,
      );
    }
    this.submitted++;
    this.queue.push({ txId, payload });
    if (this.maxTxPerBlock > 0 && this.queue.length >= this.maxTxPerBlock) this.cutSoon(0);
    else this.cutSoon(this.blockMs);
    return new gateway.SubmitResponse();
  }

  private cutSoon(ms: number) {
    if (this.stopped) return;
    if (this.cutTimer && ms > 0) return; // batch timeout already running
    if (this.cutTimer) clearTimeout(this.cutTimer);
    this.cutTimer = setTimeout(() => {
      this.cutTimer = undefined;
      this.cutBlock();
      if (this.queue.length > 0) this.cutSoon(this.queue.length >= this.maxTxPerBlock && this.maxTxPerBlock > 0 ? 0 : this.blockMs);
    }, ms);
  }

  private cutBlock() {
    if (this.queue.length === 0 || this.stopped) return;
    const n = this.maxTxPerBlock > 0 ? Math.min(this.maxTxPerBlock, this.queue.length) : this.queue.length;
    const batch = this.queue.splice(0, n);
    const seen = new Set<string>();
    const codes = new Map<number, number>(); // position -> pre-decided code
    const candidates: { txId: string; sim: Simulation }[] = [];
    batch.forEach((t, i) => {
      if (this.statuses.has(t.txId) || seen.has(t.txId)) {
        codes.set(i, TX.DUPLICATE_TXID);
        return;
      }
      seen.add(t.txId);
      const e = this.endorsed.get(t.txId)?.find((x) => x.payload.equals(t.payload));
      if (!e) {
        codes.set(i, TX.ENDORSEMENT_POLICY_FAILURE);
        return;
      }
      this.endorsed.delete(t.txId);
      candidates.push({ txId: t.txId, sim: e.sim });
    });
    let blockNumber: number;
    const results = new Map<string, number>();
    const events = new Map<string, { name: string; payload: Buffer }>();
    try {
      const out = this.world.commitBlock(candidates);
      blockNumber = out.blockNumber;
      for (const r of out.results) results.set(r.txId, VALIDATION_CODES[r.code] ?? TX.INVALID_OTHER_REASON);
      for (const ev of out.events) events.set(ev.txId, { name: ev.eventName, payload: ev.payload });
    } catch (err) {
      // FabricWorld failed: nothing was applied; report it loudly and fail the block's transactions
      process.stderr.write(`fabric-gateway emulator: commitBlock failed: ${(err as Error).stack ?? String(err)}\n`);
      blockNumber = this.height;
    }
    const record: BlockRecord = { number: blockNumber, txs: [] };
    batch.forEach((t, i) => {
      const code = codes.get(i) ?? results.get(t.txId) ?? TX.INVALID_OTHER_REASON;
      const event = code === TX.VALID ? events.get(t.txId) : undefined;
      record.txs.push({ txId: t.txId, code, event });
      if (!this.statuses.has(t.txId)) {
        this.statuses.set(t.txId, { code, blockNumber });
        this.txBlock.set(t.txId, blockNumber);
      }
    });
    this.blocks.set(blockNumber, record);
    this.blocksCut++;
    // stale endorsements (never submitted) are dropped after 10 minutes
    const old = Date.now() - 600_000;
    for (const [id, list] of this.endorsed) if (list.every((e) => e.at < old)) this.endorsed.delete(id);
    for (const t of batch) {
      const ws = this.statusWaiters.get(t.txId);
      if (ws) {
        this.statusWaiters.delete(t.txId);
        for (const w of ws) w();
      }
    }
    for (const l of [...this.blockListeners]) l();
  }

  private commitStatus(
    req: gateway.SignedCommitStatusRequest,
    call: grpc.ServerUnaryCall<gateway.SignedCommitStatusRequest, gateway.CommitStatusResponse>,
  ): Promise<gateway.CommitStatusResponse> {
    const bytes = req.getRequest_asU8();
    if (bytes.length === 0) throw new GatewayFault(grpc.status.INVALID_ARGUMENT, 'a commit status request is required');
    let r: gateway.CommitStatusRequest;
    try {
      r = gateway.CommitStatusRequest.deserializeBinary(bytes);
    } catch (err) {
      throw new GatewayFault(grpc.status.INVALID_ARGUMENT, `invalid status request: ${(err as Error).message}`);
    }
    if (r.getIdentity_asU8().length === 0) throw new GatewayFault(grpc.status.INVALID_ARGUMENT, 'no identity provided');
    if (!r.getChannelId()) throw new GatewayFault(grpc.status.INVALID_ARGUMENT, 'no channel ID provided');
    if (!r.getTransactionId()) throw new GatewayFault(grpc.status.INVALID_ARGUMENT, 'transaction ID should not be empty');
    if (r.getChannelId() !== this.channel) {
      throw new GatewayFault(grpc.status.ABORTED, `channel '${r.getChannelId()}' not found`);
    }
    const txId = r.getTransactionId();
    const answer = () => {
      const s = this.statuses.get(txId);
      if (!s) return undefined;
      const res = new gateway.CommitStatusResponse();
      res.setResult(s.code as peer.TxValidationCodeMap[keyof peer.TxValidationCodeMap]);
      res.setBlockNumber(s.blockNumber);
      return res;
    };
    const now = answer();
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      let set = this.statusWaiters.get(txId);
      if (!set) this.statusWaiters.set(txId, (set = new Set()));
      const waiters = set;
      const cleanup = () => {
        waiters.delete(wake);
        if (waiters.size === 0 && this.statusWaiters.get(txId) === waiters) this.statusWaiters.delete(txId);
        this.closers.delete(onStop);
      };
      const wake = () => {
        cleanup();
        const res = answer();
        if (res) resolve(res);
      };
      const onStop = () => {
        cleanup();
        reject(new GatewayFault(grpc.status.UNAVAILABLE, 'peer is shutting down'));
      };
      waiters.add(wake);
      this.closers.add(onStop);
      call.once('cancelled', () => {
        cleanup();
        reject(new GatewayFault(grpc.status.CANCELLED, 'context canceled'));
      });
    });
  }

  private chaincodeEvents(call: grpc.ServerWritableStream<gateway.SignedChaincodeEventsRequest, gateway.ChaincodeEventsResponse>) {
    const fail = (f: GatewayFault) => call.emit('error', f.toServiceError());
    const release = this.acquire();
    if (!release) {
      fail(this.limitFault());
      return;
    }
    const bytes = call.request.getRequest_asU8();
    if (bytes.length === 0) {
      release();
      fail(new GatewayFault(grpc.status.INVALID_ARGUMENT, 'a chaincode events request is required'));
      return;
    }
    let r: gateway.ChaincodeEventsRequest;
    try {
      r = gateway.ChaincodeEventsRequest.deserializeBinary(bytes);
    } catch (err) {
      release();
      fail(new GatewayFault(grpc.status.INVALID_ARGUMENT, `invalid chaincode events request: ${(err as Error).message}`));
      return;
    }
    if (r.getChannelId() !== this.channel) {
      release();
      fail(new GatewayFault(grpc.status.NOT_FOUND, `channel '${r.getChannelId()}' not found`));
      return;
    }
    const chaincode = r.getChaincodeId();
    const afterTx = r.getAfterTransactionId();
    let next: number;
    const afterBlock = afterTx ? this.txBlock.get(afterTx) : undefined;
    if (afterBlock !== undefined) next = afterBlock;
    else {
      const pos = r.getStartPosition();
      const kind = pos?.getTypeCase() ?? orderer.SeekPosition.TypeCase.TYPE_NOT_SET;
      if (kind === orderer.SeekPosition.TypeCase.SPECIFIED) next = pos?.getSpecified()?.getNumber() ?? 0;
      else if (kind === orderer.SeekPosition.TypeCase.NEXT_COMMIT || kind === orderer.SeekPosition.TypeCase.TYPE_NOT_SET) {
        next = this.height;
      } else {
        release();
        const name = kind === orderer.SeekPosition.TypeCase.NEWEST ? 'SeekPosition_Newest' : 'SeekPosition_Oldest';
        fail(new GatewayFault(grpc.status.INVALID_ARGUMENT, `invalid start position type: *orderer.${name}`));
        return;
      }
    }
    // as the peer's matcher: with after_transaction_id, nothing matches until that tx's event has gone by
    let passed = !afterTx;
    let closed = false;
    const pump = () => {
      while (!closed && !this.hung && next < this.height) {
        const block = this.blocks.get(next);
        next++;
        if (!block) continue;
        const events: peer.ChaincodeEvent[] = [];
        for (const t of block.txs) {
          // only events of VALID transactions exist for the peer's iterator; its after-transaction
          // matcher looks at those events alone (a checkpointed tx id without an event is never passed)
          if (t.code !== TX.VALID || !t.event) continue;
          if (!passed) {
            if (t.txId === afterTx) passed = true;
            continue;
          }
          if (chaincode !== this.chaincode) continue;
          const ev = new peer.ChaincodeEvent();
          ev.setChaincodeId(this.chaincode);
          ev.setTxId(t.txId);
          ev.setEventName(t.event.name);
          ev.setPayload(t.event.payload);
          events.push(ev);
        }
        if (events.length === 0) continue;
        const res = new gateway.ChaincodeEventsResponse();
        res.setBlockNumber(block.number);
        res.setEventsList(events);
        call.write(res);
      }
    };
    const close = () => {
      if (closed) return;
      closed = true;
      this.blockListeners.delete(pump);
      this.closers.delete(onStop);
      release();
    };
    const onStop = () => {
      close();
      fail(new GatewayFault(grpc.status.UNAVAILABLE, 'peer is shutting down'));
    };
    call.once('cancelled', close);
    call.once('error', close);
    call.once('finish', close);
    this.closers.add(onStop);
    this.blockListeners.add(pump);
    pump();
  }

  hang() {
    if (this.hung) return;
    let release = () => undefined as void;
    const promise = new Promise<void>((r) => (release = r));
    this.hung = { promise, release };
  }

  unhang() {
    const h = this.hung;
    if (!h) return;
    this.hung = undefined;
    h.release();
    for (const l of [...this.blockListeners]) l();
  }

  stop() {
    this.unhang();
    this.stopped = true;
    if (this.cutTimer) clearTimeout(this.cutTimer);
    this.cutTimer = undefined;
    for (const c of [...this.closers]) c();
  }
}

/** Start an emulated peer gateway on 127.0.0.1:<free port>. */
export async function startFabricGateway(opts: FabricGatewayOptions = {}): Promise<FabricGatewayHandle> {
  const channel = opts.channel ?? 'mychannel';
  const chaincode = opts.chaincode ?? 'sets-registry';
  const peerMspId = opts.peerMspId ?? 'Org1MSP';
  const serverName = opts.serverName ?? 'peer0.org1.example.com';
  const blockMs = opts.blockMs ?? 100;
  const maxConcurrent = opts.maxConcurrent ?? 500;
  const maxTxPerBlock = opts.maxTxPerBlock ?? 0;
  if (!(blockMs >= 0)) throw new Error(`blockMs must be >= 0, got ${blockMs}`);
  if (!(maxConcurrent >= 1)) throw new Error(`maxConcurrent must be >= 1, got ${maxConcurrent}`);

  const world = new FabricWorld({ chaincodeName: chaincode, channel, peerMspId });
  const peerIdentity = makeIdentity({ mspId: peerMspId, cn: serverName });
  const emu = new Emulator(world, { channel, chaincode, peerMspId, blockMs, maxConcurrent, maxTxPerBlock }, peerIdentity);

  let tls: { caCert: string; cert: string; key: string } | undefined;
  if (opts.tls) tls = makeTlsServer({ names: [serverName] });
  const creds = tls
    ? grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(tls.key), cert_chain: Buffer.from(tls.cert) }], false)
    : grpc.ServerCredentials.createInsecure();

  const server = new grpc.Server();
  server.addService(gateway.GatewayService, emu.service());
  const innerPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', creds, (err, port) => (err ? reject(err) : resolve(port))),
  );
  // clients dial the proxy: pause()/resume() cut and restore it without touching the server
  const proxy: TcpProxy = await startTcpProxy(innerPort);
  const endpoint = `127.0.0.1:${proxy.port}`;
  emu.address = endpoint;
  let stopped = false;

  const grpcClient = (o: { serverNameOverride?: string } = {}) => {
    if (!tls) return new grpc.Client(endpoint, grpc.credentials.createInsecure());
    const name = o.serverNameOverride ?? serverName;
    return new grpc.Client(endpoint, grpc.credentials.createSsl(Buffer.from(tls.caCert)), {
      'grpc.ssl_target_name_override': name,
      'grpc.default_authority': name,
    });
  };

  return {
    endpoint,
    tlsCaCert: tls?.caCert,
    serverNameOverride: tls ? serverName : undefined,
    channel,
    chaincode,
    peerMspId,
    world,
    async stop() {
      if (stopped) return;
      stopped = true;
      emu.stop();
      await proxy.close();
      server.forceShutdown();
    },
    async pause(o = {}) {
      if (o.hang) emu.hang();
      else await proxy.cut();
    },
    async resume() {
      emu.unhang();
      await proxy.restore();
    },
    async cutConnections() {
      await proxy.cut();
      await proxy.restore();
    },
    identity(o) {
      return makeIdentity({ mspId: o.mspId ?? peerMspId, cn: o.cn, attrs: o.attrs });
    },
    grpcClient,
    connect(id, o = {}) {
      const ownClient = !o.client;
      const client = o.client ?? grpcClient();
      const gw = connect({
        client,
        identity: { mspId: id.mspId, credentials: Buffer.from(id.certificate) },
        signer: signers.newPrivateKeySigner(crypto.createPrivateKey(id.privateKey)),
        hash: hash.sha256,
        ...o,
      });
      if (!ownClient) return gw;
      // closing the Gateway does not close a grpc client it was given: do it for the one made here
      const close = gw.close.bind(gw);
      gw.close = () => {
        close();
        client.close();
      };
      return gw;
    },
    txStatus: (txId) => emu.txStatus(txId),
    get height() {
      return emu.height;
    },
    get stats() {
      return { active: emu.active, rejected: emu.rejected, blocks: emu.blocksCut, submitted: emu.submitted };
    },
  };
}
