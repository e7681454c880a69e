import {
  ConnectedSocket,
  MessageBody,
  OnGatewayDisconnect,
  SubscribeMessage,
  WebSocketGateway,
  WebSocketServer,
} from '@nestjs/websockets';
import { Server, Socket } from 'socket.io';

export type Notification = Record<string, unknown>;

/** The Socket.IO port; the control API listens on its own port (see main.ts). */
export const WEBSOCKET_PORT = Number(process.env.PORT ?? 5000);

const room = (userId: string) => `user_${userId}`;

/**
 * Clients subscribe to user ids over Socket.IO; backends push through the service methods,
 * which the HTTP controller calls. Each user is a room, so every device of a user gets a push.
 */
@WebSocketGateway(WEBSOCKET_PORT, { cors: { origin: '*' } })
export class NotificationGateway implements OnGatewayDisconnect {
  @WebSocketServer()
  server: Server;

  /** user id -> ids of the sockets subscribed to it. */
  private readonly userConnections = new Map<string, Set<string>>();

  @SubscribeMessage('subscribe')
  handleSubscribe(@ConnectedSocket() client: Socket, @MessageBody() userId: string) {
    if (userId === undefined || userId === null || userId === '') {
      client.emit('error', { message: 'userId required' });
      return;
    }
    userId = String(userId);
    client.join(room(userId));
    let sockets = this.userConnections.get(userId);
    if (!sockets) {
      sockets = new Set();
      this.userConnections.set(userId, sockets);
    }
    sockets.add(client.id);
    client.emit('subscribed', { userId, socketId: client.id });
  }

  @SubscribeMessage('unsubscribe')
  handleUnsubscribe(@ConnectedSocket() client: Socket, @MessageBody() userId: string) {
    if (userId === undefined || userId === null || userId === '') return;
    userId = String(userId);
    client.leave(room(userId));
    this.forget(userId, client.id);
    client.emit('unsubscribed', { userId });
  }

  handleDisconnect(client: Socket) {
    for (const [userId, sockets] of this.userConnections) {
      if (sockets.has(client.id)) this.forget(userId, client.id);
    }
  }

  pushNotificationToUser(userId: string, notification: Notification): number {
    this.server.to(room(userId)).emit('notification', stamped(notification));
    return this.userConnections.get(userId)?.size ?? 0;
  }

  pushNotificationToUsers(userIds: string[], notification: Notification): number {
    const ids = userIds.map(String);
    // One emit to the union of the rooms: a socket in several of them gets it once.
    this.server.to(ids.map(room)).emit('notification', stamped(notification));
    const sockets = new Set<string>();
    for (const id of ids) this.userConnections.get(id)?.forEach((s) => sockets.add(s));
    return sockets.size;
  }

  broadcastNotification(notification: Notification): number {
    this.server.emit('notification', stamped(notification));
    return this.server.engine.clientsCount;
  }

  private forget(userId: string, socketId: string) {
    const sockets = this.userConnections.get(userId);
    if (!sockets) return;
    sockets.delete(socketId);
    if (sockets.size === 0) this.userConnections.delete(userId);
  }
}

function stamped(notification: Notification): Notification {
  return { ...notification, timestamp: notification.timestamp ?? new Date().toISOString() };
}
