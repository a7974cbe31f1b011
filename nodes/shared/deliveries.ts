/**
 * The process-wide register of unsettled RabbitMQ deliveries: `rabbit-subscribe` adds each
 * delivery (manual ack mode) and puts its id in msg.amqp.deliveryId; `rabbit-ack`, anywhere in
 * any flow, settles it by that id. One instance per Node-RED process (module cache).
 */
import { DeliveryTracker } from '../../lib/ops/deliveries';

export const deliveries = new DeliveryTracker();
