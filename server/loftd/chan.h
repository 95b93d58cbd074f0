/*
 * chan.h: an ipc channel (lib/ipc) on the event loop, for loftd's
 * children: records are read as they come and handed to a callback one by
 * one, sends are queued and flushed when the socket is writable, and the
 * first failure (the peer gone, a protocol error, a full queue) is
 * reported once through the close callback, after which sends fail.
 */
#ifndef LOFT_LOFTD_CHAN_H
#define LOFT_LOFTD_CHAN_H

struct ioloop;
struct ipc_msg;
struct chan;

struct chan_callbacks {
	/* msg: one record; its fd, if any, is the callback's to take
	 * (ipc_msg_take_fd), otherwise it is closed after the call. The
	 * callback may chan_free the channel. */
	void (*msg)(struct chan *ch, struct ipc_msg *m, void *ctx);
	/* closed: the channel failed or the peer closed it (error says
	 * which; NULL for a clean close). The callback may chan_free. */
	void (*closed)(struct chan *ch, const char *error, void *ctx);
};

/* chan_new: watch fd (owned from now on). Never NULL. */
struct chan *chan_new(struct ioloop *loop, int fd,
    const struct chan_callbacks *cb, void *ctx);
/* chan_free: close and free; *chp becomes NULL; NULL is fine. */
void chan_free(struct chan **chp);
/* chan_send: queue m (its fd moves on success) and start writing.
 * Returns 0, or -1 when the channel has failed or m is malformed (m's fd
 * is then closed); the close callback reports a failure later. */
int chan_send(struct chan *ch, struct ipc_msg *m);
/* chan_ok: false once the channel has failed. */
int chan_ok(const struct chan *ch);

#endif
