/**
 * n8n's own engine, in-process, for the fast test suite.
 *
 * What runs here is n8n itself (n8n-core 1.122 + n8n-workflow 1.120), the way the n8n app runs a
 * workflow, minus its database and UI:
 *
 * - node and credential types are loaded from our build output by n8n's own `DirectoryLoader`
 *   (the class n8n uses for community packages: one class per `<Class>.node.js` /
 *   `<Class>.credentials.js` file, the exported class named like the file), under the package name
 *   `n8n-nodes-sets`, so node types are `n8n-nodes-sets.<description.name>` as in the n8n app;
 * - a workflow (the JSON n8n exports: nodes, connections, settings) becomes an n8n-workflow
 *   `Workflow` and is executed by n8n-core's `WorkflowExecute.processRunExecutionData`, with
 *   `ExecutionLifecycleHooks` collecting the node order and the final `IRun`, exactly as
 *   n8n's (unpublished) NodeTestHarness does;
 * - trigger nodes are activated by n8n-core's `ActiveWorkflows` (the class the n8n app activates
 *   workflows with): `trigger()` runs with a real `TriggerContext` whose `emit(data, responsePromise,
 *   donePromise)` starts a new `WorkflowExecute` run of the workflow from the trigger node with the
 *   emitted items (mode `trigger`, as the app's WorkflowExecutionService does) and resolves
 *   `donePromise` with that run's `IRun` once it has finished, whatever its outcome; deactivation
 *   (`ActiveWorkflows.remove`) calls the trigger's `closeFunction`;
 * - credentials come from a test-supplied map through a real `ICredentialsHelper`: `getDecrypted`
 *   looks the workflow's credential reference up (by id, then name), checks its type, fills in the
 *   credential type's defaults (properties of parent types included) and resolves expressions,
 *   as n8n's CredentialsHelper does; generic and function `authenticate` are applied;
 * - `N8N_USER_FOLDER` points at a temp dir (n8n writes its settings and encryption key there).
 *
 * n8n-nodes-base (Manual Trigger, Code, NoOp, ...) is NOT installed in the development tree: it
 * depends on a CDN-hosted xlsx tarball that cannot be fetched here and is ~70 dependencies big.
 * Node types this loader does not know are reported as unknown to the engine (n8n's `Workflow`
 * tolerates them, as it does for a node type that is not installed), so a workflow from `flows/`
 * is executed from its first SETS node on: `run(wf, { startNode, input })` puts that node on the
 * execution stack with the items the built-ins before it would have produced (a Manual Trigger
 * emits one empty item). Everything from there on runs in n8n's engine; the n8n app test runs the
 * same files whole, with the real Manual Trigger. The engine refuses (WorkflowHasIssuesError) to
 * start a run whose start node or a node after it has an unknown type, so an unavailable built-in
 * can never be skipped silently.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  ActiveWorkflows,
  CredentialTestContext,
  Credentials,
  DirectoryLoader,
  ExecutionLifecycleHooks,
  ExternalSecretsProxy,
  TriggerContext,
  WorkflowExecute,
} from 'n8n-core';
import { Container } from '@n8n/di';
// not exported from n8n-core's root; see releaseSshCleanupTimer
import { SSHClientsManager } from 'n8n-core/dist/execution-engine/ssh-clients-manager';
import {
  ICredentialsHelper,
  NodeHelpers,
  Workflow,
  createDeferredPromise,
  createRunExecutionData,
} from 'n8n-workflow';
import type {
  ExecutionBaseError,
  ExecutionStatus,
  IAuthenticateGeneric,
  ICredentialDataDecryptedObject,
  ICredentialTestFunction,
  ICredentialTestRequest,
  ICredentialType,
  ICredentialTypes,
  ICredentialsExpressionResolveValues,
  IDataObject,
  IDeferredPromise,
  IExecuteData,
  IExecuteResponsePromiseData,
  IHttpRequestHelper,
  IHttpRequestOptions,
  INode,
  INodeCredentialTestResult,
  INodeCredentialsDetails,
  INodeExecutionData,
  INodeParameters,
  INodeProperties,
  INodeType,
  INodeTypes,
  IRequestOptionsSimplified,
  IRun,
  IRunData,
  ITaskData,
  ITriggerFunctions,
  IVersionedNodeType,
  IWorkflowBase,
  IWorkflowExecuteAdditionalData,
  IWorkflowSettings,
  IConnections,
  IPinData,
  WorkflowActivateMode,
  WorkflowExecuteMode,
} from 'n8n-workflow';

/** The package name n8n gives our node and credential types (`<package>.<name>`). */
export const PACKAGE_NAME = 'n8n-nodes-sets';

// n8n reads N8N_USER_FOLDER when its InstanceSettings are first created (lazily, on first use by
// the engine); every harness in this process shares one temp folder, removed at exit.
const userFolder = (() => {
  const given = process.env.N8N_USER_FOLDER;
  if (given && given.startsWith(os.tmpdir())) return given;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sets-n8n-user-'));
  process.env.N8N_USER_FOLDER = dir;
  // n8n's settings file with an encryption key, private as n8n wants it (else n8n generates one
  // and warns about the file's permissions on every run)
  fs.mkdirSync(path.join(dir, '.n8n'), { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dir, '.n8n', 'config'), JSON.stringify({ encryptionKey: randomBytes(24).toString('base64') }), { mode: 0o600 });
  process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
})();

/** A workflow as n8n exports it (the shape of the files in flows/). */
export interface WorkflowFile {
  name: string;
  nodes: INode[];
  connections: IConnections;
  settings?: IWorkflowSettings;
  pinData?: IPinData;
  active?: boolean;
  id?: string;
  [key: string]: unknown;
}

/** Decrypted credential data for one stored credential, as a user enters it in n8n. */
export interface TestCredential {
  /** credential type name (e.g. `setsTaxiiApi`); checked against the node's request */
  type: string;
  data: ICredentialDataDecryptedObject;
}

/** Stored credentials by id or by name (workflows refer to credentials by `{ id, name }`). */
export type CredentialMap = Record<string, TestCredential>;

// ---------------------------------------------------------------------------------------------
// loading our node and credential classes the way n8n loads a community package

/** n8n's DirectoryLoader over our build output, with the community package's name. */
class SetsBuildLoader extends DirectoryLoader {
  packageName = PACKAGE_NAME;

  async loadAll(): Promise<void> {
    for (const file of findFiles(this.directory, 'nodes', '.node.js')) this.loadNodeFromFile(file);
    for (const file of findFiles(this.directory, 'credentials', '.credentials.js')) this.loadCredentialFromFile(file);
  }
}

function findFiles(root: string, dir: string, suffix: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    const abs = path.join(root, rel);
    if (!fs.existsSync(abs)) return;
    for (const ent of fs.readdirSync(abs, { withFileTypes: true })) {
      const r = path.join(rel, ent.name);
      if (ent.isDirectory()) walk(r);
      else if (ent.name.endsWith(suffix)) out.push(r);
    }
  };
  walk(dir);
  return out.sort();
}

/** n8n's INodeTypes over the loader; types it does not hold are unknown (undefined) to the engine. */
class HarnessNodeTypes implements INodeTypes {
  constructor(private readonly loader: DirectoryLoader) {}

  private lookup(type: string): INodeType | IVersionedNodeType | undefined {
    const [pkg, name] = splitType(type);
    if (pkg !== PACKAGE_NAME || !(name in this.loader.nodeTypes)) return undefined;
    return this.loader.nodeTypes[name].type;
  }

  getByName(type: string): INodeType | IVersionedNodeType {
    // n8n-workflow declares a non-optional result, but its Workflow handles unknown types
    // (undefined) on purpose; that is what a type that is not installed looks like here.
    return this.lookup(type) as INodeType | IVersionedNodeType;
  }

  getByNameAndVersion(type: string, version?: number): INodeType {
    const t = this.lookup(type);
    return (t === undefined ? undefined : NodeHelpers.getVersionedNodeType(t, version)) as INodeType;
  }

  getKnownTypes(): IDataObject {
    const out: IDataObject = {};
    for (const [name, v] of Object.entries(this.loader.known.nodes)) out[`${PACKAGE_NAME}.${name}`] = { ...v };
    return out;
  }
}

function splitType(type: string): [string, string] {
  const i = type.lastIndexOf('.');
  return i < 0 ? ['', type] : [type.slice(0, i), type.slice(i + 1)];
}

class HarnessCredentialTypes implements ICredentialTypes {
  constructor(private readonly loader: DirectoryLoader) {}

  recognizes(type: string): boolean {
    return type in this.loader.credentialTypes;
  }

  getByName(type: string): ICredentialType {
    return this.loader.getCredential(type).type;
  }

  getSupportedNodes(type: string): string[] {
    return (this.loader.nodesByCredential[type] ?? []).map((n) => `${PACKAGE_NAME}.${n}`);
  }

  getParentTypes(type: string): string[] {
    const own = this.recognizes(type) ? (this.getByName(type).extends ?? []) : [];
    return own.flatMap((p) => [p, ...this.getParentTypes(p)]);
  }
}

// ---------------------------------------------------------------------------------------------
// credentials

/**
 * n8n's ICredentialsHelper for tests: the stored credentials are a map given by the test instead
 * of the encrypted database rows; everything n8n does with them on the way to a node is done.
 */
export class TestCredentialsHelper extends ICredentialsHelper {
  private map: CredentialMap = {};

  constructor(private readonly types: HarnessCredentialTypes) {
    super();
  }

  set(map: CredentialMap): void {
    this.map = { ...map };
  }

  add(key: string, credential: TestCredential): void {
    this.map[key] = credential;
  }

  getParentTypes(name: string): string[] {
    return this.types.getParentTypes(name);
  }

  getCredentialsProperties(type: string): INodeProperties[] {
    if (!this.types.recognizes(type)) throw new Error(`n8n harness: unknown credential type "${type}"`);
    const own = this.types.getByName(type).properties;
    const inherited = this.getParentTypes(type).flatMap((p) => (this.types.recognizes(p) ? this.types.getByName(p).properties : []));
    const names = new Set(own.map((p) => p.name));
    return [...own, ...inherited.filter((p) => !names.has(p.name))];
  }

  private find(details: INodeCredentialsDetails, type: string): TestCredential {
    const byId = details.id ? this.map[details.id] : undefined;
    const found = byId ?? this.map[details.name];
    if (!found) {
      throw new Error(`n8n harness: no credential "${details.name}" (id ${String(details.id)}) of type "${type}" was given to the test`);
    }
    if (found.type !== type) {
      throw new Error(`n8n harness: credential "${details.name}" is of type "${found.type}", the node asked for "${type}"`);
    }
    return found;
  }

  async getDecrypted(
    additionalData: IWorkflowExecuteAdditionalData,
    nodeCredentials: INodeCredentialsDetails,
    type: string,
    mode: WorkflowExecuteMode,
    _executeData?: IExecuteData,
    raw?: boolean,
    expressionResolveValues?: ICredentialsExpressionResolveValues,
  ): Promise<ICredentialDataDecryptedObject> {
    const stored = structuredClone(this.find(nodeCredentials, type).data);
    if (raw === true) return stored;
    // as n8n: the type's defaults fill what the user left out, then expressions are resolved
    const withDefaults = (NodeHelpers.getNodeParameters(this.getCredentialsProperties(type), stored as INodeParameters, true, false, null, null) ??
      {}) as ICredentialDataDecryptedObject;
    for (const [k, v] of Object.entries(stored)) if (!(k in withDefaults)) withDefaults[k] = v;
    if (!expressionResolveValues) return withDefaults;
    const { workflow, runExecutionData, runIndex, itemIndex, node, connectionInputData } = expressionResolveValues;
    const additionalKeys = { $credentials: withDefaults };
    const resolved = workflow.expression.getParameterValue(
      withDefaults as INodeParameters,
      runExecutionData,
      runIndex,
      itemIndex,
      node.name,
      connectionInputData,
      mode,
      additionalKeys,
      undefined,
      false,
      withDefaults,
    );
    void additionalData;
    return resolved as ICredentialDataDecryptedObject;
  }

  async getCredentials(nodeCredentials: INodeCredentialsDetails, type: string): Promise<Credentials> {
    const found = this.find(nodeCredentials, type);
    const c = new Credentials({ id: nodeCredentials.id, name: nodeCredentials.name }, type);
    c.setData(found.data);
    return c;
  }

  async updateCredentials(nodeCredentials: INodeCredentialsDetails, type: string, data: ICredentialDataDecryptedObject): Promise<void> {
    const found = this.find(nodeCredentials, type);
    found.data = { ...data };
  }

  async updateCredentialsOauthTokenData(
    nodeCredentials: INodeCredentialsDetails,
    type: string,
    data: ICredentialDataDecryptedObject,
  ): Promise<void> {
    const found = this.find(nodeCredentials, type);
    found.data = { ...found.data, oauthTokenData: data.oauthTokenData };
  }

  async preAuthentication(
    helpers: IHttpRequestHelper,
    credentials: ICredentialDataDecryptedObject,
    typeName: string,
  ): Promise<ICredentialDataDecryptedObject | undefined> {
    const type = this.types.getByName(typeName);
    if (typeof type.preAuthentication !== 'function') return undefined;
    const extra = await type.preAuthentication.call(helpers, credentials);
    return { ...credentials, ...(extra as ICredentialDataDecryptedObject) };
  }

  async authenticate(
    credentials: ICredentialDataDecryptedObject,
    typeName: string,
    requestOptions: IHttpRequestOptions | IRequestOptionsSimplified,
    workflow: Workflow,
    node: INode,
  ): Promise<IHttpRequestOptions> {
    const type = this.types.getByName(typeName);
    const auth = type.authenticate;
    const opts = requestOptions as IHttpRequestOptions;
    if (auth === undefined) return opts;
    if (typeof auth === 'function') return auth(credentials, opts);
    return applyGenericAuth(auth, credentials, opts, workflow, node);
  }
}

/** n8n's generic authentication: header / query / body / basic auth values, expressions over $credentials. */
function applyGenericAuth(
  auth: IAuthenticateGeneric,
  credentials: ICredentialDataDecryptedObject,
  opts: IHttpRequestOptions,
  workflow: Workflow,
  node: INode,
): IHttpRequestOptions {
  const resolve = (v: unknown): unknown =>
    typeof v === 'string' && v.startsWith('=')
      ? workflow.expression.getSimpleParameterValue(node, v, 'internal', { $credentials: credentials }, undefined, '')
      : v;
  const out: IHttpRequestOptions = { ...opts };
  const p = auth.properties;
  if (p.headers) {
    const headers: IDataObject = { ...(out.headers ?? {}) };
    for (const [k, v] of Object.entries(p.headers)) headers[k] = resolve(v) as string;
    out.headers = headers;
  }
  if (p.qs) {
    const qs: IDataObject = { ...(out.qs ?? {}) };
    for (const [k, v] of Object.entries(p.qs)) qs[k] = resolve(v) as string;
    out.qs = qs;
  }
  if (p.body) {
    const body: IDataObject = { ...((out.body as IDataObject | undefined) ?? {}) };
    for (const [k, v] of Object.entries(p.body)) body[k] = resolve(v) as string;
    out.body = body;
  }
  if (p.auth) {
    out.auth = { username: String(resolve(p.auth.username) ?? ''), password: String(resolve(p.auth.password) ?? '') };
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// runs

/** The outcome of one execution, read from n8n's IRun. */
export interface RunResult {
  /** n8n's own record of the execution */
  run: IRun;
  status: ExecutionStatus;
  /** the error that stopped the execution (n8n's `resultData.error`), if any */
  error?: ExecutionBaseError;
  /** node names in the order n8n finished them */
  order: string[];
  runData: IRunData;
  /** items a node sent on one output (default: first output, first run); [] when nothing */
  output(node: string, outputIndex?: number, runIndex?: number): INodeExecutionData[];
  /** the items of every output of a node's run */
  outputs(node: string, runIndex?: number): INodeExecutionData[][];
  /** the task record n8n kept for a node's run (error, hints, timing) */
  task(node: string, runIndex?: number): ITaskData | undefined;
  /** how many times a node ran */
  runs(node: string): number;
}

function toResult(run: IRun, order: string[]): RunResult {
  const runData = run.data.resultData.runData;
  const task = (node: string, runIndex = 0) => runData[node]?.[runIndex];
  const outputs = (node: string, runIndex = 0) => (task(node, runIndex)?.data?.main ?? []).map((items) => items ?? []);
  return {
    run,
    status: run.status,
    error: run.data.resultData.error,
    order,
    runData,
    task,
    outputs,
    output: (node, outputIndex = 0, runIndex = 0) => outputs(node, runIndex)[outputIndex] ?? [],
    runs: (node) => runData[node]?.length ?? 0,
  };
}

export interface RunOptions {
  /** node to start at (default: n8n's start node of the workflow) */
  startNode?: string;
  /** items the start node receives (default: one empty item, what a Manual Trigger emits) */
  input?: INodeExecutionData[];
  /** n8n execution mode (default `manual`, as when the user presses "Execute workflow") */
  mode?: WorkflowExecuteMode;
  /** pinned output data by node name, as in the workflow's `pinData` */
  pinData?: IPinData;
}

/** A workflow activated as the n8n app activates one with a trigger node. */
export interface ActiveWorkflow {
  workflow: Workflow;
  /** executions the triggers started, finished, in order of completion */
  readonly executions: RunResult[];
  /** errors the triggers reported with `emitError` */
  readonly triggerErrors: Error[];
  /** emits still running */
  readonly running: number;
  /** resolves with the n-th finished execution (1-based, counting from activation) */
  execution(n: number, timeoutMs?: number): Promise<RunResult>;
  /** resolves when `predicate` holds for the finished executions */
  waitFor(predicate: (executions: RunResult[]) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /** resolves with the next `emitError` (or the first one already reported) */
  triggerError(timeoutMs?: number): Promise<Error>;
  /** deactivate: n8n's ActiveWorkflows.remove calls each trigger's closeFunction; waits for running executions */
  close(): Promise<void>;
}

let workflowSeq = 0;

export interface N8nHarnessOptions {
  /** the build output folder holding nodes/ and credentials/ (default: the one this file was built into) */
  buildRoot?: string;
  credentials?: CredentialMap;
}

export class N8nHarness {
  readonly nodeTypes: INodeTypes;
  readonly credentialTypes: HarnessCredentialTypes;
  readonly credentials: TestCredentialsHelper;
  readonly userFolder = userFolder;
  private readonly active = new Set<ActiveWorkflow>();

  private constructor(readonly loader: DirectoryLoader) {
    this.nodeTypes = new HarnessNodeTypes(loader);
    this.credentialTypes = new HarnessCredentialTypes(loader);
    this.credentials = new TestCredentialsHelper(this.credentialTypes);
  }

  static async create(opts: N8nHarnessOptions = {}): Promise<N8nHarness> {
    const root = opts.buildRoot ?? path.resolve(__dirname, '..', '..');
    const loader = new SetsBuildLoader(root);
    await loader.loadAll();
    const h = new N8nHarness(loader);
    if (opts.credentials) h.credentials.set(opts.credentials);
    return h;
  }

  /** node type names loaded (`n8n-nodes-sets.<name>`) */
  get nodeTypeNames(): string[] {
    return Object.keys(this.loader.nodeTypes).map((n) => `${PACKAGE_NAME}.${n}`);
  }

  /** credential type names loaded */
  get credentialTypeNames(): string[] {
    return Object.keys(this.loader.credentialTypes);
  }

  nodeType(type: string): INodeType {
    const t = this.nodeTypes.getByNameAndVersion(type);
    if (!t) throw new Error(`n8n harness: node type "${type}" is not loaded (have ${this.nodeTypeNames.join(', ')})`);
    return t;
  }

  /** n8n's Workflow for a workflow file (a deep copy: n8n fills parameter defaults into its nodes) */
  workflow(file: WorkflowFile): Workflow {
    const data = structuredClone(file);
    return new Workflow({
      id: data.id ?? `harness-${++workflowSeq}`,
      name: data.name,
      nodes: data.nodes,
      connections: data.connections,
      nodeTypes: this.nodeTypes,
      settings: { executionOrder: 'v1', ...(data.settings ?? {}) },
      pinData: data.pinData,
      active: false,
    });
  }

  private additionalData(hooks: ExecutionLifecycleHooks): IWorkflowExecuteAdditionalData {
    const fail = (what: string) => () => {
      throw new Error(`n8n harness: ${what} is not available in the in-process engine`);
    };
    return {
      credentialsHelper: this.credentials,
      hooks,
      executionId: hooks.executionId,
      executeWorkflow: async () => fail('executing a sub-workflow')(),
      getRunExecutionData: async () => undefined,
      currentNodeExecutionIndex: 0,
      restApiUrl: 'http://127.0.0.1:5678/rest',
      instanceBaseUrl: 'http://127.0.0.1:5678/',
      formWaitingBaseUrl: 'http://127.0.0.1:5678/form-waiting',
      webhookBaseUrl: 'http://127.0.0.1:5678/webhook',
      webhookWaitingBaseUrl: 'http://127.0.0.1:5678/webhook-waiting',
      webhookTestBaseUrl: 'http://127.0.0.1:5678/webhook-test',
      variables: {},
      logAiEvent: () => undefined,
      startRunnerTask: async () => fail('a task runner (Code node)')(),
      externalSecretsProxy: Container.get(ExternalSecretsProxy),
    };
  }

  private hooks(mode: WorkflowExecuteMode, file: WorkflowFile, workflow: Workflow): { hooks: ExecutionLifecycleHooks; order: string[]; done: Promise<IRun> } {
    const executionId = String(++workflowSeq);
    const base: IWorkflowBase = {
      id: workflow.id,
      name: file.name,
      active: false,
      activeVersionId: null,
      isArchived: false,
      createdAt: new Date(),
      updatedAt: new Date(),
      nodes: file.nodes,
      connections: file.connections,
      settings: file.settings,
    };
    const hooks = new ExecutionLifecycleHooks(mode, executionId, base);
    const order: string[] = [];
    const done = createDeferredPromise<IRun>();
    hooks.addHandler('nodeExecuteAfter', (nodeName) => {
      order.push(nodeName);
    });
    hooks.addHandler('workflowExecuteAfter', (run) => done.resolve(run));
    return { hooks, order, done: done.promise };
  }

  /** Execute a workflow once, as "Execute workflow" does, from `startNode` with `input`. */
  async run(file: WorkflowFile, opts: RunOptions = {}): Promise<RunResult> {
    const workflow = this.workflow(file);
    const mode = opts.mode ?? 'manual';
    const start = opts.startNode ? workflow.getNode(opts.startNode) : workflow.getStartNode();
    if (!start) throw new Error(`n8n harness: no start node ${opts.startNode ? `"${opts.startNode}"` : ''} in workflow "${file.name}"`);
    return this.execute(file, workflow, mode, start, opts.input ?? [{ json: {} }], opts.pinData ?? file.pinData);
  }

  private async execute(
    file: WorkflowFile,
    workflow: Workflow,
    mode: WorkflowExecuteMode,
    start: INode,
    input: INodeExecutionData[] | INodeExecutionData[][],
    pinData?: IPinData,
    responsePromise?: IDeferredPromise<IExecuteResponsePromiseData>,
  ): Promise<RunResult> {
    const { hooks, order, done } = this.hooks(mode, file, workflow);
    if (responsePromise) hooks.addHandler('sendResponse', (r) => responsePromise.resolve(r));
    const main = isNested(input) ? input : [input];
    const runExecutionData = createRunExecutionData({
      executionData: { nodeExecutionStack: [{ node: start, data: { main }, source: null }] },
      resultData: { pinData },
    });
    const executor = new WorkflowExecute(this.additionalData(hooks), mode, runExecutionData);
    try {
      const returned = await executor.processRunExecutionData(workflow);
      const run = await done;
      return toResult(run ?? returned, order);
    } finally {
      // an execution may create n8n-core's SSHClientsManager too (not only a trigger activation)
      releaseSshCleanupTimer();
    }
  }

  /**
   * Activate a workflow with trigger nodes as the n8n app does (n8n-core ActiveWorkflows, mode
   * `trigger`, activation `activate`). Each `emit` runs the workflow from the emitting trigger.
   */
  async activate(file: WorkflowFile): Promise<ActiveWorkflow> {
    const workflow = this.workflow(file);
    const activeWorkflows = Container.get(ActiveWorkflows);
    const executions: RunResult[] = [];
    const triggerErrors: Error[] = [];
    const waiters = new Set<() => void>();
    const changed = () => {
      for (const w of [...waiters]) w();
    };
    const inFlight = new Set<Promise<unknown>>();
    const mode: WorkflowExecuteMode = 'trigger';
    const getTriggerFunctions = (
      wf: Workflow,
      node: INode,
      additionalData: IWorkflowExecuteAdditionalData,
      m: WorkflowExecuteMode,
      activation: WorkflowActivateMode,
    ): ITriggerFunctions => {
      const emit: ITriggerFunctions['emit'] = (data, responsePromise, donePromise) => {
        const p = this.execute(file, wf, mode, node, data, undefined, responsePromise).then(
          (result) => {
            executions.push(result);
            donePromise?.resolve(result.run);
            changed();
          },
          (err: unknown) => {
            // the engine itself failed to start the run (not a node error): n8n's app rejects
            // the done promise in that case
            const e = err instanceof Error ? err : new Error(String(err));
            triggerErrors.push(e);
            donePromise?.reject(e);
            changed();
          },
        );
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
      };
      const emitError: ITriggerFunctions['emitError'] = (error, responsePromise) => {
        triggerErrors.push(error);
        responsePromise?.reject(error);
        changed();
      };
      const ctx = new TriggerContext(wf, node, additionalData, m, activation, emit, emitError);
      releaseSshCleanupTimer();
      return ctx;
    };
    const { hooks } = this.hooks(mode, file, workflow);
    const id = workflow.id;
    await activeWorkflows.add(id, workflow, this.additionalData(hooks), mode, 'activate', getTriggerFunctions, () => {
      throw new Error('n8n harness: polling nodes are not used by SETS');
    });
    const wait = (ok: () => boolean, timeoutMs: number, what: string) =>
      new Promise<void>((resolve, reject) => {
        if (ok()) return resolve();
        const check = () => {
          if (!ok()) return;
          clearTimeout(t);
          waiters.delete(check);
          resolve();
        };
        const t = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`n8n harness: timed out after ${timeoutMs} ms waiting for ${what} (executions: ${executions.length}, trigger errors: ${triggerErrors.map((e) => e.message).join('; ') || 'none'})`));
        }, timeoutMs);
        waiters.add(check);
      });
    let closed = false;
    const handle: ActiveWorkflow = {
      workflow,
      executions,
      triggerErrors,
      get running() {
        return inFlight.size;
      },
      execution: async (n, timeoutMs = 30_000) => {
        await wait(() => executions.length >= n, timeoutMs, `execution #${n}`);
        return executions[n - 1];
      },
      waitFor: (predicate, timeoutMs = 30_000, what = 'the executions expected') => wait(() => predicate(executions), timeoutMs, what),
      triggerError: async (timeoutMs = 30_000) => {
        await wait(() => triggerErrors.length > 0, timeoutMs, 'a trigger error');
        return triggerErrors[0];
      },
      close: async () => {
        if (closed) return;
        closed = true;
        this.active.delete(handle);
        await Promise.allSettled([...inFlight]);
        if (activeWorkflows.isActive(id)) await activeWorkflows.remove(id);
      },
    };
    this.active.add(handle);
    return handle;
  }

  /**
   * A credential's connection test as n8n's credentials tester runs it for a non-HTTP service:
   * the node that names the credential with `testedBy` supplies `methods.credentialTest[testedBy]`,
   * called with n8n's CredentialTestContext and the decrypted data (type defaults filled in).
   */
  async testCredential(type: string, data: ICredentialDataDecryptedObject): Promise<INodeCredentialTestResult> {
    for (const name of Object.keys(this.loader.nodeTypes)) {
      const nodeType = this.nodeType(`${PACKAGE_NAME}.${name}`);
      for (const cred of nodeType.description.credentials ?? []) {
        if (cred.name !== type || !cred.testedBy) continue;
        if (typeof cred.testedBy !== 'string') {
          throw new Error(`n8n harness: credential "${type}" is tested by an HTTP request (${JSON.stringify(cred.testedBy as ICredentialTestRequest)}); the n8n app test runs those`);
        }
        const fn: ICredentialTestFunction | undefined = nodeType.methods?.credentialTest?.[cred.testedBy];
        if (!fn) throw new Error(`n8n harness: node "${name}" names credential test "${cred.testedBy}" but has no methods.credentialTest.${cred.testedBy}`);
        const props = this.credentials.getCredentialsProperties(type);
        const full = (NodeHelpers.getNodeParameters(props, data as INodeParameters, true, false, null, null) ?? {}) as ICredentialDataDecryptedObject;
        for (const [k, v] of Object.entries(data)) if (!(k in full)) full[k] = v;
        return fn.call(new CredentialTestContext(), { id: 'test', name: 'test', type, data: full });
      }
    }
    throw new Error(`n8n harness: no loaded node tests credential type "${type}" with testedBy`);
  }

  /** Deactivate every workflow this harness activated. */
  async close(): Promise<void> {
    for (const a of [...this.active]) await a.close();
  }
}

function isNested(input: INodeExecutionData[] | INodeExecutionData[][]): input is INodeExecutionData[][] {
  return input.length > 0 && Array.isArray(input[0]);
}

// ---------------------------------------------------------------------------------------------
// workflow files

/** The repository root (where flows/ lives), from the build output or the working directory. */
/**
 * n8n-core's SSHClientsManager, a DI singleton created with the first TriggerContext, starts a
 * 60 s cleanup interval that the n8n app clears at shutdown. A test process has no such shutdown,
 * so the interval kept mocha alive after the last test: unref it (it holds no client of ours).
 */
function releaseSshCleanupTimer(): void {
  const manager = Container.get(SSHClientsManager) as unknown as { cleanupTimer?: NodeJS.Timeout };
  manager.cleanupTimer?.unref();
}

export function repoRoot(): string {
  for (const start of [path.resolve(__dirname, '..', '..'), process.cwd()]) {
    let dir = start;
    for (;;) {
      if (fs.existsSync(path.join(dir, 'flows')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
      const up = path.dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  throw new Error('n8n harness: cannot find the repository (a folder with flows/ and package.json)');
}

/** A workflow from flows/ (a fresh copy each call). */
export function loadFlow(name: string): WorkflowFile {
  const file = path.join(repoRoot(), 'flows', name.endsWith('.json') ? name : `${name}.json`);
  return JSON.parse(fs.readFileSync(file, 'utf8')) as WorkflowFile;
}

/** The node of a workflow by name (throws when absent). */
export function nodeOf(wf: WorkflowFile, name: string): INode {
  const n = wf.nodes.find((x) => x.name === name);
  if (!n) throw new Error(`workflow "${wf.name}" has no node "${name}" (has ${wf.nodes.map((x) => x.name).join(', ')})`);
  return n;
}

/** Merge parameters into a node of a workflow (test-time substitution of addresses and options). */
export function setParameters(wf: WorkflowFile, name: string, params: INodeParameters): WorkflowFile {
  const n = nodeOf(wf, name);
  n.parameters = { ...n.parameters, ...params };
  return wf;
}

/** The nodes of a workflow whose type is one of ours. */
export function setsNodes(wf: WorkflowFile): INode[] {
  return wf.nodes.filter((n) => n.type.startsWith(`${PACKAGE_NAME}.`));
}

/**
 * The items an n8n "Edit Fields (Set)" node in raw JSON mode produces from one input item when its
 * JSON is a literal (no expressions): the parsed JSON, once. The harness does not have n8n-nodes-base,
 * so a test feeds these to the node after it; the JSON comes from the workflow file itself.
 */
export function rawSetOutput(wf: WorkflowFile, name: string): INodeExecutionData[] {
  const n = nodeOf(wf, name);
  if (n.type !== 'n8n-nodes-base.set' || n.parameters.mode !== 'raw' || typeof n.parameters.jsonOutput !== 'string') {
    throw new Error(`node "${name}" is not an Edit Fields (Set) node in raw JSON mode`);
  }
  if (n.parameters.jsonOutput.trimStart().startsWith('=')) throw new Error(`node "${name}" uses an expression: not reproducible here`);
  return [{ json: JSON.parse(n.parameters.jsonOutput) as IDataObject }];
}

// ---------------------------------------------------------------------------------------------
// credentials for the test services

/** A `setsAmqpApi` credential for an amqp:// URL (user, password, host, port, vhost taken from it). */
export function amqpCredential(url: string, extra: ICredentialDataDecryptedObject = {}): TestCredential {
  const u = new URL(url);
  const vhost = u.pathname && u.pathname !== '/' ? decodeURIComponent(u.pathname.slice(1)) : '/';
  return {
    type: 'setsAmqpApi',
    data: {
      host: u.hostname,
      port: Number(u.port || 5672),
      vhost,
      username: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
      timeout: 5000,
      ...extra,
    },
  };
}

/** A `setsEvmLedgerApi` credential for a JSON-RPC node and registry (read-only without a key). */
export function ledgerCredential(
  node: { rpcUrl: string; chainId: number },
  contract: string,
  privateKey?: string,
  extra: ICredentialDataDecryptedObject = {},
): TestCredential {
  return {
    type: 'setsEvmLedgerApi',
    data: { rpcUrl: node.rpcUrl, chainId: String(node.chainId), contract, ...(privateKey ? { privateKey } : {}), timeout: 5000, ...extra },
  };
}

/** The credential references of a workflow's nodes (`{ id, name }` by type), to check a test covers them. */
export function credentialRefs(wf: WorkflowFile): Array<{ node: string; type: string; id: string | null; name: string }> {
  return wf.nodes.flatMap((n) => Object.entries(n.credentials ?? {}).map(([type, ref]) => ({ node: n.name, type, id: ref.id, name: ref.name })));
}

// ---------------------------------------------------------------------------------------------
// leak checks

/** Counts of the process's active handles and requests by kind (`process.getActiveResourcesInfo()`). */
export function activeResources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

/** Kinds with more active resources in `after` than in `before` ({} when nothing leaked). */
export function resourceGrowth(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(after)) if (n > (before[k] ?? 0)) out[k] = n - (before[k] ?? 0);
  return out;
}

/** Wait until nothing grew compared with `before` (closing sockets settles over a few ticks), or give up after `ms`. */
export async function settledResources(before: Record<string, number>, ms = 3000): Promise<Record<string, number>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const grown = resourceGrowth(before, activeResources());
    if (Object.keys(grown).length === 0 || Date.now() > deadline) return grown;
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A TCP port free on 127.0.0.1 right now (for a trigger that listens, e.g. the TAXII server). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** The active resources once they have stopped changing (keep-alive sockets of earlier work closed), at most `maxMs`. */
export async function quietResources(stableMs = 500, maxMs = 8000): Promise<Record<string, number>> {
  const deadline = Date.now() + maxMs;
  let last = activeResources();
  for (;;) {
    await new Promise((r) => setTimeout(r, stableMs));
    const now = activeResources();
    if (JSON.stringify(now) === JSON.stringify(last) || Date.now() > deadline) return now;
    last = now;
  }
}
