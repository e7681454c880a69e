import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';

import { AppModule } from './app.module';
import { WEBSOCKET_PORT } from './notification.gateway';

const CONTROL_PORT = Number(process.env.CONTROL_PORT ?? 5001);
const HOST = process.env.HOST ?? '127.0.0.1';

async function bootstrap() {
  // Warnings and errors only: a log line per connection would be measured as the gateway's cost.
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
  app.enableShutdownHooks();
  // The gateway's Socket.IO server listens on WEBSOCKET_PORT (see @WebSocketGateway); the
  // controllers get this HTTP server.
  await app.listen(CONTROL_PORT, HOST);
  // Node closes a keep-alive connection after 5 s of silence; a backend's pool keeps it longer.
  app.getHttpServer().keepAliveTimeout = 65_000;
  console.error(`listening websocket=${HOST}:${WEBSOCKET_PORT} control=${HOST}:${CONTROL_PORT}`);
}

bootstrap().catch((err) => {
  console.error(err);
  process.exit(1);
});
