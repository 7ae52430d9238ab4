/**
 * The log lines the MQTT layer writes (pino-style: fields, then message). Fields are codes, sizes,
 * ids and topics; never a payload byte and never a token.
 */
export interface MqttLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug?(obj: object, msg: string): void;
}
