/* The built-in chat handler (hb_chat.c), registered for HB_CMD_CHAT by hb_server_init. */
#ifndef HB_CHAT_H
#define HB_CHAT_H

#include "hongbao/server.h"

int hb__chat_handler(hb_conn_t *c, const hb_frame_t *f, void *arg);

#endif /* HB_CHAT_H */
