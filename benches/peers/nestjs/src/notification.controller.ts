import {
  BadRequestException,
  Body,
  Controller,
  HttpCode,
  Param,
  Post,
} from '@nestjs/common';

import { Notification, NotificationGateway } from './notification.gateway';

const isObject = (v: unknown): v is Notification =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The control API backends call; it listens on CONTROL_PORT, apart from the sockets. */
@Controller('v1')
export class NotificationController {
  constructor(private readonly gateway: NotificationGateway) {}

  @Post('users/:userId/notifications')
  @HttpCode(202)
  toUser(@Param('userId') userId: string, @Body() notification: unknown) {
    if (!isObject(notification)) throw new BadRequestException('notification must be an object');
    return { sockets: this.gateway.pushNotificationToUser(userId, notification) };
  }

  @Post('notifications')
  @HttpCode(202)
  toUsers(@Body() body: { userIds?: unknown; notification?: unknown }) {
    if (!Array.isArray(body?.userIds)) throw new BadRequestException('userIds must be an array');
    if (!isObject(body.notification)) {
      throw new BadRequestException('notification must be an object');
    }
    return { sockets: this.gateway.pushNotificationToUsers(body.userIds, body.notification) };
  }

  @Post('broadcast')
  @HttpCode(202)
  broadcast(@Body() body: { notification?: unknown }) {
    if (!isObject(body?.notification)) {
      throw new BadRequestException('notification must be an object');
    }
    return { sockets: this.gateway.broadcastNotification(body.notification) };
  }
}
