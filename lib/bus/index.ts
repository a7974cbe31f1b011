/** SETS distribution over RabbitMQ: see ./amqp.ts (bus), ./routing.ts (routing keys), ./errors.ts. */
export * from './amqp';
export * from './routing';
export * from './errors';
