/** Operations shared by the Node-RED and n8n front ends (everything that is not glue). */
export * from './anchor';
export * from './collection';
export * from './connections';
export * from './deliveries';
export * from './errors';
export * from './payload';
export * from './publish';
export * from './result';
export * from './server-config';
export * from './server-integrity';
export * from './server-store';
export * from './settings';
export * from './probes';
export * from './taxii-connection';
export * from './taxii';
export * from './verify';
