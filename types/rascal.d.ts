// rascal (v21) ships no TypeScript types, and @types/rascal describes v10. This is the
// part of its API the workbook uses (chapter 5), written from its README and lib/.
// Ambient: it applies to every file of the project that imports 'rascal'.
declare module 'rascal' {
  import type { EventEmitter } from 'node:events';
  import type { Message } from 'amqplib';

  /** Rascal's configuration is JSON, validated by rascal itself at create(). */
  export type BrokerConfig = Record<string, unknown>;

  export interface RecoveryStrategy {
    strategy: 'ack' | 'nack' | 'republish' | 'forward';
    requeue?: boolean;
    defer?: number;
    attempts?: number;
    publication?: string;
    immediateNack?: boolean;
  }

  /** Acks with no argument; nacks (by default WITHOUT requeue) with an error. */
  export type AckOrNack = (err?: Error, recovery?: RecoveryStrategy | RecoveryStrategy[]) => void;

  export interface SubscriberSession extends EventEmitter {
    on(event: 'message', listener: (message: Message, content: unknown, ackOrNack: AckOrNack) => void): this;
    on(event: 'invalid_content' | 'redeliveries_exceeded', listener: (err: Error, message: Message, ackOrNack: AckOrNack) => void): this;
    on(event: 'error' | 'cancelled', listener: (err: Error) => void): this;
    on(event: 'subscribed' | 'close', listener: () => void): this;
    cancel(): Promise<void>;
  }

  export interface PublicationSession extends EventEmitter {
    on(event: 'error', listener: (err: Error, messageId: string) => void): this;
    on(event: 'success' | 'return', listener: (messageId: string) => void): this;
  }

  export interface ConnectionDetails {
    vhost: string;
    connectionUrl: string;
  }

  export interface BrokerAsPromised extends EventEmitter {
    readonly config: BrokerConfig;
    on(event: 'error', listener: (err: Error, details: ConnectionDetails) => void): this;
    on(event: 'vhost_initialised' | 'disconnect', listener: (details: ConnectionDetails) => void): this;
    on(event: 'blocked', listener: (reason: string, details: ConnectionDetails) => void): this;
    on(event: string, listener: (...args: any[]) => void): this;
    subscribe(name: string, overrides?: Record<string, unknown>): Promise<SubscriberSession>;
    publish(name: string, message: unknown, overrides?: Record<string, unknown> | string): Promise<PublicationSession>;
    shutdown(): Promise<void>;
    nuke(): Promise<void>;
    getConnections(): ConnectionDetails[];
  }

  const rascal: {
    BrokerAsPromised: { create(config: BrokerConfig, components?: Record<string, unknown>): Promise<BrokerAsPromised> };
    /** Your config, completed with rascal's production defaults. */
    withDefaultConfig(config: BrokerConfig): BrokerConfig;
    /** Your config, completed with rascal's TEST defaults: namespaced, purged, non-durable queues. Not for production. */
    withTestConfig(config: BrokerConfig): BrokerConfig;
    defaultConfig: BrokerConfig;
    testConfig: BrokerConfig;
  };
  export default rascal;
}
