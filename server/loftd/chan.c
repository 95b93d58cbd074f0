/*
 * chan.c: ipc channels on the event loop (see chan.h). Trusts nothing in
 * the records (lib/ipc checks the framing; the callbacks the fields).
 */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>

#include "ioloop.h"
#include "ipc.h"
#include "log.h"
#include "xmalloc.h"
#include "chan.h"

struct chan {
	struct ioloop *loop;
	struct ipc_chan *ipc;		/* owned */
	struct io *io_read, *io_write;	/* owned */
	const struct chan_callbacks *cb;
	void *ctx;
	bool failed, in_callback, freed;
};

/* Records are large: one scratch record per process is enough, since a
 * callback that receives never runs inside another. */
static struct ipc_msg chan_msg;

static void chan_read(void *ctx);

static void
chan_fail(struct chan *ch, const char *error)
{
	if (ch->failed)
		return;
	ch->failed = true;
	io_remove(&ch->io_read);
	io_remove(&ch->io_write);
	ch->cb->closed(ch, error, ch->ctx);
}

static void
chan_write(void *ctx)
{
	struct chan *ch = ctx;
	const char *error;
	int ret = ipc_chan_flush(ch->ipc, &error);

	if (ret < 0)
		chan_fail(ch, error);
	else if (ret == 0)
		io_remove(&ch->io_write);
	else if (ch->io_write == NULL)
		ch->io_write = io_add(ch->loop, ipc_chan_fd(ch->ipc), IO_WRITE,
		    chan_write, ch);
}

static void
chan_read(void *ctx)
{
	struct chan *ch = ctx;
	const char *error;
	int ret;

	ch->in_callback = true;
	while (!ch->failed && !ch->freed &&
	    (ret = ipc_chan_recv(ch->ipc, &chan_msg, &error)) == 1) {
		ch->cb->msg(ch, &chan_msg, ch->ctx);
		ipc_msg_clear(&chan_msg);
	}
	if (!ch->failed && !ch->freed && ret < 0)
		chan_fail(ch, ipc_chan_closed(ch->ipc) ? NULL : error);
	ch->in_callback = false;
	if (ch->freed) {
		ipc_chan_free(&ch->ipc);
		free(ch);
	}
}

struct chan *
chan_new(struct ioloop *loop, int fd, const struct chan_callbacks *cb,
    void *ctx)
{
	struct chan *ch = xcalloc(1, sizeof(*ch));

	ch->loop = loop;
	ch->ipc = ipc_chan_new(fd);
	ch->cb = cb;
	ch->ctx = ctx;
	ch->io_read = io_add(loop, fd, IO_READ, chan_read, ch);
	return ch;
}

void
chan_free(struct chan **chp)
{
	struct chan *ch = *chp;

	if (ch == NULL)
		return;
	*chp = NULL;
	io_remove(&ch->io_read);
	io_remove(&ch->io_write);
	ch->failed = true;
	if (ch->in_callback) {
		ch->freed = true;
		return;
	}
	ipc_chan_free(&ch->ipc);
	free(ch);
}

int
chan_send(struct chan *ch, struct ipc_msg *m)
{
	const char *error;

	if (ch->failed) {
		ipc_msg_clear(m);
		return -1;
	}
	if (ipc_chan_send(ch->ipc, m, &error) < 0) {
		log_warning("ipc: %s", error);
		ipc_msg_clear(m);
		return -1;
	}
	chan_write(ch);
	return 0;
}

int
chan_ok(const struct chan *ch)
{
	return ch != NULL && !ch->failed;
}
