import { Module } from '@nestjs/common';

import { NotificationController } from './notification.controller';
import { NotificationGateway } from './notification.gateway';

@Module({
  controllers: [NotificationController],
  providers: [NotificationGateway],
})
export class AppModule {}
