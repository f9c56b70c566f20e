// The simplest connect() there is, for running exercises 8.2 and 8.3 on their own: the next URL
// of the list that accepts, half a second between tries. Exercise 8.1 does it properly (back-off,
// jitter, a reset after a success); here it would only hide what 8.2 and 8.3 are about.
import amqp, { type ChannelModel } from 'amqplib';

/** The cluster's URLs: RABBITMQ_URLS (comma-separated), else RABBITMQ_URL, else the local default. */
export function clusterUrls(): string[] {
  return (process.env.RABBITMQ_URLS ?? process.env.RABBITMQ_URL ?? 'amqp://localhost').split(',');
}

/** A connect() that tries the URLs in turn, for ever, until one accepts. */
export function connectInTurn(urls: string[]): () => Promise<ChannelModel> {
  let next = 0;
  return async () => {
    for (;;) {
      const url = urls[next++ % urls.length]!;
      try {
        return await amqp.connect(url);
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  };
}
