/*
 * master.c: loftd's master process. It loads and checks the
 * configuration, binds the listeners, spawns the auth, login and smtpd
 * processes (one "generation" of them per configuration), accepts client
 * connections and hands each to a login process (POP3, IMAP) or an smtpd
 * process (SMTP, submission), counts connections in
 * total and per client address, redeems login tokens with the auth
 * process and hands logged-in clients to a mail process running as the
 * mailbox owner, and reloads (SIGHUP) and stops (SIGTERM) the whole. It
 * also runs the queue manager (qmgr, one, outside the generations),
 * relays smtpd's "queued" notices to it, and turns its delivery requests
 * into deliveries by the mail process of the recipient's owner; and the
 * lmtp process (one, outside the generations too), whose connections it
 * accepts on lmtp_listen (TCP, or a UNIX socket it makes) and whose
 * recipient checks and deliveries it serves as qmgr's.
 *
 * SECURITY: this process keeps root, so it reads no byte a client sends:
 * it accepts sockets and passes them on. From its children it takes only
 * ipc records (length-checked by lib/ipc), and it believes a login
 * process's claim of who logged in only after the auth process has
 * redeemed the one-time token it issued for that login, for the same
 * service and client address. The queue manager is believed no more: it
 * names a user and passes a read-only descriptor of a queue file, and the
 * master looks the user up itself and hands the request to that user's
 * mail process only, so qmgr can write into no mailbox and cannot pick
 * whose process runs. The lmtp process is believed as little: it gets
 * "this name is a user" or not, and its deliveries go the same way.
 * A request of qmgr's to run an alias's command or file
 * (LOFTD_DELIVER_LOCAL) is checked by localcmd.c against the master's
 * own expansion of that alias, which also gives the uid it runs as.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "conf.h"
#include "fsutil.h"
#include "ioloop.h"
#include "ipc.h"
#include "log.h"
#include "logpipe.h"
#include "net.h"
#include "priv.h"
#include "tls.h"
#include "user.h"
#include "xmalloc.h"
#include "auth_proto.h"
#include "smtp_queue.h"
#include "loftd.h"
#include "localcmd.h"

#define MASTER_ACCEPT_BATCH	64	/* accepts per listener event */
#define MASTER_RESPAWN_MIN_MS	1000
#define MASTER_RESPAWN_MAX_MS	30000
#define MASTER_KILL_GRACE_MS	5000	/* SIGTERM to SIGKILL at shutdown */
#define MASTER_SLOT_INDEX_BITS	20	/* conn_id: seq << 20 | index */
/* How often mail processes are checked against mail_process_idle_time:
 * without sessions for that long, one is retired (with system users, one
 * per owner who ever logged in would otherwise stay). */
#define MASTER_MAIL_CHECK_MS	1000
#define MASTER_SLOTS_MAX	(1u << MASTER_SLOT_INDEX_BITS)
/* Longest address in a delivery request (the queue's limit). */
#define MASTER_ADDR_MAX		SMTP_QUEUE_ADDR_MAX

enum master_role {
	MASTER_ROLE_AUTH,
	MASTER_ROLE_LOGIN,
	MASTER_ROLE_MAIL,
	MASTER_ROLE_SMTPD,
	MASTER_ROLE_QMGR,
	MASTER_ROLE_LMTP
};

static const char *const master_role_names[] = {
	"auth", "login", "mail", "smtpd", "qmgr", "lmtp"
};

struct master_child {
	struct master_child *prev, *next;
	enum master_role role;
	pid_t pid;			/* 0 once reaped */
	unsigned gen;			/* but MAIL: generation */
	bool retired;
	struct ipc_chan *chan;		/* owned; NULL once broken */
	struct io *io_read, *io_write;	/* owned */
	size_t conns;			/* slots that name it */
	uid_t uid;			/* MAIL: the mailbox owner */
	gid_t gid;
	bool system;
	uint64_t idle_since_ms;		/* MAIL: when conns fell to 0 */
	size_t deliveries;		/* MAIL: deliveries under way */
	struct master_batch *inbatch;	/* owned: QMGR, the items of a
					   LOFTD_DELIVER_BATCH coming in */
};

/* One item of a LOFTD_DELIVER_BATCH from qmgr, until the batch is in. */
struct master_batch_item {
	uint32_t req;			/* the asker's */
	int fd;				/* owned: the content; -1 once used */
	char *qid, *rcpt, *sender;	/* owned */
};

/* The items of one batch (loftd.h: all for the same user, back to
 * back). */
struct master_batch {
	char *user;			/* owned */
	struct master_batch_item item[LOFTD_BATCH_MAX];
	size_t n;
	uint32_t left;			/* as the last item said */
};

/* A delivery the qmgr or the lmtp process asked for and the master
 * passed to a mail process, until the mail process answers (or exits). */
struct master_delivery {
	struct master_delivery *next;
	uint32_t id;			/* the master's, in LOFTD_DELIVER */
	uint32_t req;			/* the asker's */
	struct master_child *mail;
	struct master_child *from;	/* qmgr or lmtp; NULL once gone */
	bool quota;			/* a LOFTD_QUOTA_CHECK for an RCPT:
					   answered as LOFTD_LMTP_RCPT_RESULT */
};

/* One client connection, from accept until both its login and its mail
 * process have let go of it. */
struct master_slot {
	uint32_t id;			/* 0: free */
	uint32_t service;
	char ip[NET_ADDR_STR_MAX];
	unsigned rport;
	/* login: the login process, or for SMTP the smtpd process, that
	 * holds the client; mail: the mail process after login. */
	struct master_child *login, *mail;
	/* While a login is being redeemed: */
	bool redeeming, relayed, secured;
	int fd;				/* the client (or relay) socket */
	unsigned char *pending;		/* owned */
	size_t pending_len;
};

struct master_listener {
	struct master_listener *next;
	char *param;			/* "pop3_listen" */
	char *spec;			/* one item of it */
	uint32_t service;
	bool tls;
	bool unix_path;			/* spec is a UNIX socket we made */
	int fd;
	struct io *io;			/* owned; NULL while paused */
};

struct master {
	struct ioloop *loop;
	char *conf_path;		/* absolute */
	unsigned char *conf_text;	/* owned: what the children run with */
	size_t conf_len;
	bool foreground, root, stopping;
	char self_exe[4096];
	/* The program of the mail processes, loftd-mail beside self_exe;
	 * "" if missing: self_exe then (master_find_mail_exe). */
	char mail_exe[4096];
	struct master_listener *listeners;
	struct master_child *children;
	unsigned gen;			/* current generation; 0: none */
	uint64_t gen_started_ms;
	unsigned respawn_ms;
	struct timeout *respawn_to, *stop_to, *kill_to;
	struct timeout *mail_idle_to;	/* owned: retires idle mail processes */
	struct master_slot *slots;	/* owned array */
	size_t nslots, used, hint;
	uint32_t seq;
	/* The queue manager. */
	struct timeout *qmgr_to;	/* owned: start (again) */
	unsigned qmgr_respawn_ms;
	uint64_t qmgr_started_ms;
	/* The lmtp process. */
	struct timeout *lmtp_to;	/* owned: start (again) */
	unsigned lmtp_respawn_ms;
	uint64_t lmtp_started_ms;
	struct master_delivery *deliveries;	/* owned list */
	size_t ndeliveries;
	uint32_t delivery_seq;
};

static struct master master;
/* Scratch records: one process, one thread, handlers never nest. */
static struct ipc_msg master_in, master_out;

static void master_child_read(void *ctx);
static void master_child_write(void *ctx);
static void master_gen_start(void);
static void master_qmgr_start(void);
static void master_lmtp_start(void);
static struct master_child *master_lmtp(void);

/*
 * Configuration.
 */

static int
master_read_file(const char *path, unsigned char **text_r, size_t *len_r,
    const char **error_r)
{
	static char errbuf[512];
	struct buf b;
	unsigned char chunk[8192];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(errbuf, sizeof(errbuf), "%s: %s", path,
		    strerror(errno));
		*error_r = errbuf;
		return -1;
	}
	buf_init(&b, CONF_FILE_MAX);
	while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
		if (buf_append(&b, chunk, (size_t)n) < 0) {
			snprintf(errbuf, sizeof(errbuf), "%s: larger than "
			    "%d bytes", path, CONF_FILE_MAX);
			*error_r = errbuf;
			close(fd);
			buf_free(&b);
			return -1;
		}
	}
	close(fd);
	if (n < 0) {
		snprintf(errbuf, sizeof(errbuf), "%s: %s", path,
		    strerror(errno));
		*error_r = errbuf;
		buf_free(&b);
		return -1;
	}
	buf_append(&b, "", 0);
	*text_r = buf_steal(&b, len_r);
	if (*text_r == NULL)
		*text_r = (unsigned char *)xstrdup("");
	return 0;
}

/* What loftd needs beyond conf_load's checks: every listener parses, the
 * certificate loads, the login user exists. */
static const char *const master_listen_params[] = {
	"pop3_listen", "pop3s_listen", "imap_listen", "imaps_listen",
	"smtp_listen", "submission_listen", "submissions_listen",
	"lmtp_listen", NULL
};

/* The listeners this version serves: service and implicit TLS. */
static const struct {
	const char *param;
	uint32_t service;
	bool tls;
} master_served[] = {
	{ "pop3_listen", LOFTD_SVC_POP3, false },
	{ "pop3s_listen", LOFTD_SVC_POP3, true },
	{ "imap_listen", LOFTD_SVC_IMAP, false },
	{ "imaps_listen", LOFTD_SVC_IMAP, true },
	{ "smtp_listen", LOFTD_SVC_SMTP, false },
	{ "submission_listen", LOFTD_SVC_SUBMISSION, false },
	{ "submissions_listen", LOFTD_SVC_SUBMISSIONS, true },
	{ "lmtp_listen", LOFTD_SVC_LMTP, false },
};

static int
master_param_served_index(const char *param)
{
	for (size_t i = 0; i < sizeof(master_served) /
	    sizeof(master_served[0]); i++)
		if (strcmp(param, master_served[i].param) == 0)
			return (int)i;
	return -1;
}

static bool
master_param_served(const char *param)
{
	return master_param_served_index(param) >= 0;
}

/* login_user must exist, must not be root, and must not be the owner of
 * virtual users' mail: a login process must reach no mailbox. */
static int
master_check_login_user(const char **error_r)
{
	static char errbuf[512];
	const char *name = conf_str("login_user");
	const char *vuid = conf_str("virtual_uid");
	struct passwd *pw = getpwnam(name), *vpw;
	uid_t login_uid;
	char *end;
	unsigned long n;

	if (pw == NULL || pw->pw_uid == 0) {
		snprintf(errbuf, sizeof(errbuf), "login_user %s: %s", name,
		    pw == NULL ? "no such user (create it: useradd --system "
		    "--no-create-home --shell /usr/sbin/nologin NAME)" :
		    "must not be root");
		*error_r = errbuf;
		return -1;
	}
	login_uid = pw->pw_uid;
	if (vuid[0] == '\0')
		return 0;
	n = strtoul(vuid, &end, 10);
	if (*end == '\0' ? (uid_t)n == login_uid :
	    ((vpw = getpwnam(vuid)) != NULL && vpw->pw_uid == login_uid)) {
		snprintf(errbuf, sizeof(errbuf), "login_user %s owns the "
		    "virtual users' mail (virtual_uid): give the login "
		    "processes an account of their own", name);
		*error_r = errbuf;
		return -1;
	}
	return 0;
}

/* mail_owner (the smtpd processes, the queue) must exist, must not be
 * root, and must be neither login_user (a login process could write the
 * queue) nor the owner of virtual users' mail (an smtpd process, which
 * parses what any client on the Internet sends, must reach no mailbox). */
static int
master_check_mail_owner(const char **error_r)
{
	static char errbuf[512];
	const char *name = conf_str("mail_owner");
	const char *vuid = conf_str("virtual_uid");
	struct passwd *pw = getpwnam(name), *other;
	uid_t uid;
	char *end;
	unsigned long n;

	if (pw == NULL || pw->pw_uid == 0) {
		snprintf(errbuf, sizeof(errbuf), "mail_owner %s: %s", name,
		    pw == NULL ? "no such user (create it: useradd --system "
		    "--no-create-home --shell /usr/sbin/nologin NAME)" :
		    "must not be root");
		*error_r = errbuf;
		return -1;
	}
	uid = pw->pw_uid;
	if ((other = getpwnam(conf_str("login_user"))) != NULL &&
	    other->pw_uid == uid) {
		snprintf(errbuf, sizeof(errbuf), "mail_owner %s is also "
		    "login_user: give the smtpd processes an account of their "
		    "own", name);
		*error_r = errbuf;
		return -1;
	}
	if (vuid[0] == '\0')
		return 0;
	n = strtoul(vuid, &end, 10);
	if (*end == '\0' ? (uid_t)n == uid :
	    ((other = getpwnam(vuid)) != NULL && other->pw_uid == uid)) {
		snprintf(errbuf, sizeof(errbuf), "mail_owner %s owns the "
		    "virtual users' mail (virtual_uid): give the smtpd "
		    "processes an account of their own", name);
		*error_r = errbuf;
		return -1;
	}
	return 0;
}

/* The queue directory, made if missing (its parents 0755, itself 0700,
 * owned by mail_owner when we are root). One that exists is left as it
 * is: smtp_queue_open in the smtpd process checks its owner and mode. */
static int
master_prepare_queue(const char **error_r)
{
	static char errbuf[1024];
	const char *dir = conf_str("queue_directory");
	struct passwd *pw = NULL;
	char *parent, *slash;
	struct stat st;

	if (dir[0] != '/') {
		*error_r = "queue_directory must be an absolute path";
		return -1;
	}
	if (lstat(dir, &st) == 0)
		return 0;
	if (master.root && (pw = getpwnam(conf_str("mail_owner"))) == NULL) {
		*error_r = "mail_owner: no such user";
		return -1;
	}
	parent = xstrdup(dir);
	if ((slash = strrchr(parent, '/')) != NULL && slash != parent)
		*slash = '\0';
	if ((fsutil_mkdir_p(parent, 0755) < 0 ||
	    mkdir(dir, 0700) < 0) && errno != EEXIST) {
		snprintf(errbuf, sizeof(errbuf), "queue_directory %s: %s", dir,
		    strerror(errno));
		free(parent);
		*error_r = errbuf;
		return -1;
	}
	free(parent);
	if (pw != NULL && chown(dir, pw->pw_uid, pw->pw_gid) < 0) {
		snprintf(errbuf, sizeof(errbuf), "queue_directory %s: chown: "
		    "%s", dir, strerror(errno));
		*error_r = errbuf;
		return -1;
	}
	log_info("made the queue directory %s", dir);
	return 0;
}

/* Whether the configuration names an SMTP listener. */
static bool
master_conf_smtp(void)
{
	size_t n;
	char **items;
	bool any = false;

	for (size_t i = 0; i < sizeof(master_served) /
	    sizeof(master_served[0]); i++) {
		if (!loftd_service_smtp(master_served[i].service))
			continue;
		items = conf_list(master_served[i].param, &n);
		any = any || n > 0;
		conf_list_free(&items);
	}
	return any;
}

/* Whether the configuration names an LMTP listener: then the lmtp
 * process runs, as mail_owner, with its spool in queue_directory. */
static bool
master_conf_lmtp(void)
{
	size_t n;
	char **items = conf_list("lmtp_listen", &n);

	conf_list_free(&items);
	return n > 0;
}

/* Whether a listener item is a UNIX socket path (lmtp_listen only). */
static bool
master_item_unix(const char *param, const char *item)
{
	return item[0] == '/' && strcmp(param, "lmtp_listen") == 0;
}

/* One item of a listener parameter: host:port, or for lmtp_listen an
 * absolute path that fits a socket address. */
static int
master_check_item(const char *param, const char *item, const char **error_r)
{
	static char errbuf[512];
	struct sockaddr_un sun;
	struct net_addr *addrs;
	size_t count;
	const char *error;

	if (master_item_unix(param, item)) {
		if (strlen(item) < sizeof(sun.sun_path))
			return 0;
		error = "socket path too long";
	} else if (net_parse_listen(item, &addrs, &count, &error) == 0) {
		free(addrs);
		return 0;
	}
	snprintf(errbuf, sizeof(errbuf), "%s: %s: %s", param, item, error);
	*error_r = errbuf;
	return -1;
}

static int
master_prepare_chroot(const char **error_r)
{
	static char errbuf[512];
	const char *dir = conf_str("login_chroot");
	struct stat st;

	if (!master.root || dir[0] == '\0')
		return 0;
	if (fsutil_mkdir_p(dir, 0755) < 0 || stat(dir, &st) < 0) {
		snprintf(errbuf, sizeof(errbuf), "login_chroot %s: %s", dir,
		    strerror(errno));
		*error_r = errbuf;
		return -1;
	}
	if (st.st_uid != 0 || (st.st_mode & 022) != 0) {
		snprintf(errbuf, sizeof(errbuf), "login_chroot %s must be "
		    "owned by root and writable by nobody else", dir);
		*error_r = errbuf;
		return -1;
	}
	return 0;
}

static int
master_check_conf(const char **error_r)
{
	static char errbuf[1024];
	struct tls_ctx *tls = NULL;
	size_t n;
	char **items;
	const char *error;
	bool want_tls = false;

	for (size_t p = 0; master_listen_params[p] != NULL; p++) {
		items = conf_list(master_listen_params[p], &n);
		for (size_t i = 0; i < n; i++) {
			if (master_check_item(master_listen_params[p],
			    items[i], error_r) < 0) {
				conf_list_free(&items);
				return -1;
			}
		}
		if (n > 0 && master_param_served(master_listen_params[p]) &&
		    master_served[master_param_served_index(
		    master_listen_params[p])].tls)
			want_tls = true;
		/* Submission needs STARTTLS before AUTH, unless plaintext
		 * passwords are allowed. */
		if (n > 0 && strcmp(master_listen_params[p],
		    "submission_listen") == 0 &&
		    conf_bool("disable_plaintext_auth"))
			want_tls = true;
		conf_list_free(&items);
	}
	if (conf_str("tls_cert_file")[0] != '\0') {
		if (tls_ctx_new(conf_str("tls_cert_file"),
		    conf_str("tls_key_file"), conf_str("tls_protocols"),
		    conf_str("tls_ciphers"), conf_str("tls_ciphersuites"), &tls,
		    &error) < 0) {
			snprintf(errbuf, sizeof(errbuf), "%s", error);
			*error_r = errbuf;
			return -1;
		}
		tls_ctx_free(&tls);
	} else if (want_tls) {
		*error_r = "pop3s_listen, imaps_listen, submissions_listen "
		    "and submission_listen (unless disable_plaintext_auth = "
		    "no) need tls_cert_file";
		return -1;
	}
	if (master.root &&
	    (master_check_login_user(error_r) < 0 ||
	    master_prepare_chroot(error_r) < 0))
		return -1;
	if ((master_conf_smtp() || master_conf_lmtp()) &&
	    ((master.root && master_check_mail_owner(error_r) < 0) ||
	    master_prepare_queue(error_r) < 0))
		return -1;
	return 0;
}

/* Load text as the configuration and check it; on failure the running
 * configuration (if any) stays. Takes text. */
static int
master_conf_apply(unsigned char *text, size_t len, const char **error_r)
{
	const char *error;

	if (conf_load_buffer(master.conf_path, (const char *)text, len,
	    error_r) < 0) {
		free(text);
		return -1;
	}
	if (master_check_conf(error_r) < 0) {
		/* Put the old one back; it loaded before, it loads again. */
		if (master.conf_text != NULL &&
		    conf_load_buffer(master.conf_path,
		    (const char *)master.conf_text, master.conf_len,
		    &error) < 0)
			log_fatal("cannot restore the configuration: %s",
			    error);
		free(text);
		return -1;
	}
	free(master.conf_text);
	master.conf_text = text;
	master.conf_len = len;
	return 0;
}

/* The configuration text as a sealed memfd for a child. */
static int
master_conf_fd(void)
{
	int fd = memfd_create("loft.conf", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	size_t off = 0;
	ssize_t n;

	if (fd < 0)
		return -1;
	while (off < master.conf_len) {
		n = write(fd, master.conf_text + off, master.conf_len - off);
		if (n <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	(void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
	    F_SEAL_WRITE | F_SEAL_SEAL);
	return fd;
}

/*
 * Listeners.
 */

static void master_accept(void *ctx);

static void
master_listener_free(struct master_listener *l)
{
	io_remove(&l->io);
	if (l->unix_path)
		(void)unlink(l->spec);
	if (l->fd >= 0)
		close(l->fd);
	free(l->param);
	free(l->spec);
	free(l);
}

/* lmtp_socket_mode (checked octal by conf_params.c). */
static mode_t
master_socket_mode(void)
{
	return (mode_t)strtoul(conf_str("lmtp_socket_mode"), NULL, 8);
}

/* Whether something accepts connections on the socket sun names. */
static bool
master_unix_live(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	bool live;

	if (fd < 0)
		return false;
	live = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0 ||
	    errno == EAGAIN;
	close(fd);
	return live;
}

/*
 * A listening UNIX socket at path, made by us as root, mode
 * lmtp_socket_mode (until the chmod it has the umask's mode, never a
 * wider one). A socket file left there is replaced only when nothing
 * answers on it: another loftd's live socket is an error, as a bound
 * TCP port is. Returns the fd, or -1 with *error_r.
 */
static int
master_listen_unix(const char *path, const char **error_r)
{
	static char errbuf[400];	/* a path fits sun_path */
	struct sockaddr_un sun;
	struct stat st;
	mode_t mode = master_socket_mode();
	char *dir, *slash;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	/* Its directory (e.g. /run/loft, which is lost at each boot) as
	 * the login chroot's: made if missing, 0755. */
	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		(void)fsutil_mkdir_p(dir, 0755);
	}
	free(dir);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(errbuf, sizeof(errbuf), "%s exists and is no "
			    "socket", path);
			*error_r = errbuf;
			return -1;
		}
		if (master_unix_live(&sun)) {
			errno = EADDRINUSE;
			goto fail;
		}
		(void)unlink(path);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(path, mode) < 0 || listen(fd, SOMAXCONN) < 0) {
		int err = errno;

		close(fd);
		errno = err;
		goto fail;
	}
	return fd;
fail:
	snprintf(errbuf, sizeof(errbuf), "bind %s: %s", path,
	    strerror(errno));
	*error_r = errbuf;
	return -1;
}

static struct master_listener *
master_listener_new(const char *param, const char *spec, int fd,
    bool unix_path)
{
	struct master_listener *l = xcalloc(1, sizeof(*l));
	int i = master_param_served_index(param);

	l->param = xstrdup(param);
	l->spec = xstrdup(spec);
	l->service = unix_path ? LOFTD_SVC_LMTP_UNIX :
	    master_served[i].service;
	l->tls = master_served[i].tls;
	l->unix_path = unix_path;
	l->fd = fd;
	return l;
}

/* Bind the listeners the configuration names that are not bound yet;
 * close the ones it no longer names. Failing to bind a new one is an
 * error when starting, a logged error on reload. */
static int
master_listeners_update(bool starting, const char **error_r)
{
	static char errbuf[512];
	struct master_listener *old = master.listeners, *l, **lp, *keep = NULL;
	struct net_addr *addrs;
	size_t count, n;
	const char *error;
	char **items;
	int fd;

	for (size_t p = 0; master_listen_params[p] != NULL; p++) {
		const char *param = master_listen_params[p];

		items = conf_list(param, &n);
		if (n > 0 && !master_param_served(param))
			log_warning("%s is set, but this version of loftd "
			    "does not serve it: not listening there", param);
		for (size_t i = 0; i < n && master_param_served(param); i++) {
			/* Keep a socket bound for the same item. */
			for (lp = &old; *lp != NULL; lp = &(*lp)->next)
				if (strcmp((*lp)->param, param) == 0 &&
				    strcmp((*lp)->spec, items[i]) == 0)
					break;
			if (*lp != NULL) {
				l = *lp;
				*lp = l->next;
				l->next = keep;
				keep = l;
				/* The mode may be new. */
				if (l->unix_path && chmod(l->spec,
				    master_socket_mode()) < 0)
					log_warning("chmod %s: %s", l->spec,
					    strerror(errno));
				continue;
			}
			if (master_item_unix(param, items[i])) {
				if ((fd = master_listen_unix(items[i],
				    &error)) < 0) {
					snprintf(errbuf, sizeof(errbuf),
					    "%s: %s", param, error);
					goto fail;
				}
				l = master_listener_new(param, items[i], fd,
				    true);
				l->next = keep;
				keep = l;
				continue;
			}
			if (net_parse_listen(items[i], &addrs, &count,
			    &error) < 0) {
				snprintf(errbuf, sizeof(errbuf), "%s: %s",
				    param, error);
				goto fail;
			}
			for (size_t a = 0; a < count; a++) {
				if ((fd = net_listen(&addrs[a], 0,
				    &error)) < 0) {
					snprintf(errbuf, sizeof(errbuf),
					    "%s: %s", param, error);
					free(addrs);
					goto fail;
				}
				l = master_listener_new(param, items[i], fd,
				    false);
				l->next = keep;
				keep = l;
			}
			free(addrs);
		}
		conf_list_free(&items);
	}
	while (old != NULL) {
		l = old;
		old = l->next;
		log_info("no longer listening on %s", l->spec);
		master_listener_free(l);
	}
	master.listeners = keep;
	return 0;
fail:
	conf_list_free(&items);
	*error_r = errbuf;
	if (starting) {
		while (old != NULL) {
			l = old;
			old = l->next;
			master_listener_free(l);
		}
		master.listeners = keep;
		return -1;
	}
	/* On reload: keep what we had, and what is bound by now. */
	for (l = keep; l != NULL && l->next != NULL; l = l->next)
		;
	if (l != NULL)
		l->next = old;
	else
		keep = old;
	master.listeners = keep;
	return -1;
}

/* Watch the listeners while a login process can take connections. */
static void
master_listeners_watch(bool on)
{
	for (struct master_listener *l = master.listeners; l != NULL;
	    l = l->next) {
		if (on && l->io == NULL)
			l->io = io_add(master.loop, l->fd, IO_READ,
			    master_accept, l);
		else if (!on)
			io_remove(&l->io);
	}
}

/*
 * Children.
 */

static void master_batch_free(struct master_batch **bp);

static void
master_child_close_chan(struct master_child *c)
{
	io_remove(&c->io_read);
	io_remove(&c->io_write);
	ipc_chan_free(&c->chan);
	/* A batch cut short: nobody is left to answer. */
	master_batch_free(&c->inbatch);
}

static void
master_child_flush(struct master_child *c)
{
	const char *error;
	int ret;

	if (c->chan == NULL)
		return;
	ret = ipc_chan_flush(c->chan, &error);
	if (ret < 0) {
		log_warning("%s process %ld: %s", master_role_names[c->role],
		    (long)c->pid, error);
		master_child_close_chan(c);
	} else if (ret > 0 && c->io_write == NULL)
		c->io_write = io_add(master.loop, ipc_chan_fd(c->chan),
		    IO_WRITE, master_child_write, c);
	else if (ret == 0)
		io_remove(&c->io_write);
}

static void
master_child_write(void *ctx)
{
	master_child_flush(ctx);
}

static int
master_send(struct master_child *c, struct ipc_msg *m)
{
	const char *error;

	if (c->chan == NULL) {
		ipc_msg_clear(m);
		return -1;
	}
	if (ipc_chan_send(c->chan, m, &error) < 0) {
		log_warning("to %s process %ld: %s",
		    master_role_names[c->role], (long)c->pid, error);
		ipc_msg_clear(m);
		return -1;
	}
	master_child_flush(c);
	return 0;
}

static void
master_send_simple(struct master_child *c, uint32_t type)
{
	ipc_msg_init(&master_out, type, 0);
	(void)master_send(c, &master_out);
}

/*
 * Fork and exec ourselves as role. fds[i] becomes descriptor targets[i]
 * in the child; the channel to the master is made here. For a mail
 * process, u names the owner to become before exec.
 */
static struct master_child *
master_spawn(enum master_role role, const int *fds, const int *targets,
    size_t nfds, int nchan, int nsmtpd, const struct user *u)
{
	struct master_child *c;
	char nbuf[16], sbuf[16];
	const char *argv[14], *error;
	int sp[2], conf_fd, log_fd = logpipe_child_fd();
	size_t argc = 0;
	sigset_t none;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
		log_error("socketpair: %s", strerror(errno));
		return NULL;
	}
	if ((conf_fd = master_conf_fd()) < 0) {
		log_error("memfd_create: %s", strerror(errno));
		close(sp[0]);
		close(sp[1]);
		return NULL;
	}
	argv[argc++] = role == MASTER_ROLE_MAIL && master.mail_exe[0] != '\0' ?
	    "loftd-mail" : "loftd";
	argv[argc++] = "-c";
	argv[argc++] = master.conf_path;
	if (master.foreground)
		argv[argc++] = "-f";
	if (log_fd >= 0)
		argv[argc++] = "-L";
	argv[argc++] = "-X";
	argv[argc++] = master_role_names[role];
	if (nchan > 0) {
		snprintf(nbuf, sizeof(nbuf), "%d", nchan);
		argv[argc++] = "-n";
		argv[argc++] = nbuf;
	}
	if (nsmtpd > 0) {
		snprintf(sbuf, sizeof(sbuf), "%d", nsmtpd);
		argv[argc++] = "-s";
		argv[argc++] = sbuf;
	}
	argv[argc] = NULL;

	pid = fork();
	if (pid < 0) {
		log_error("fork: %s", strerror(errno));
		close(sp[0]);
		close(sp[1]);
		close(conf_fd);
		return NULL;
	}
	if (pid == 0) {
		int tmp[LOFTD_LOGIN_MAX + 4], n = 0;

		/* Move every descriptor out of the way, then into place;
		 * dup2 clears close-on-exec on the targets only. */
		tmp[n++] = fcntl(sp[1], F_DUPFD_CLOEXEC, 200);
		tmp[n++] = fcntl(conf_fd, F_DUPFD_CLOEXEC, 200);
		tmp[n++] = log_fd >= 0 ?
		    fcntl(log_fd, F_DUPFD_CLOEXEC, 200) : -1;
		for (size_t i = 0; i < nfds; i++)
			tmp[n++] = fcntl(fds[i], F_DUPFD_CLOEXEC, 200);
		for (int i = 0; i < n; i++)
			if (tmp[i] < 0 && !(i == 2 && log_fd < 0))
				_exit(71);
		if (dup2(tmp[0], LOFTD_FD_MASTER) < 0 ||
		    dup2(tmp[1], LOFTD_FD_CONF) < 0 ||
		    (log_fd >= 0 && dup2(tmp[2], LOFTD_FD_LOG) < 0))
			_exit(71);
		for (size_t i = 0; i < nfds; i++)
			if (dup2(tmp[3 + i], targets[i]) < 0)
				_exit(71);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (u != NULL && priv_become(u, true, &error) < 0) {
			log_error("mail process for uid %lu: %s",
			    (unsigned long)u->uid, error);
			_exit(71);
		}
		if (role == MASTER_ROLE_MAIL && master.mail_exe[0] != '\0') {
			execv(master.mail_exe, (char *const *)argv);
			log_error("exec %s: %s", master.mail_exe,
			    strerror(errno));
			/* Removed since the start: the whole of loftd can do
			 * the mail role too, at a higher cost in memory. */
			argv[0] = "loftd";
		}
		execv(master.self_exe, (char *const *)argv);
		log_error("exec %s: %s", master.self_exe, strerror(errno));
		_exit(71);
	}
	close(sp[1]);
	close(conf_fd);
	c = xcalloc(1, sizeof(*c));
	c->role = role;
	c->pid = pid;
	c->chan = ipc_chan_new(sp[0]);
	c->io_read = io_add(master.loop, sp[0], IO_READ, master_child_read, c);
	c->next = master.children;
	if (c->next != NULL)
		c->next->prev = c;
	master.children = c;
	return c;
}

static struct master_child *
master_gen_auth(unsigned gen)
{
	for (struct master_child *c = master.children; c != NULL; c = c->next)
		if (c->role == MASTER_ROLE_AUTH && c->gen == gen &&
		    c->pid != 0)
			return c;
	return NULL;
}

/* The processes of generation gen that the auth process serves: login
 * and smtpd. */
static size_t
master_gen_logins(unsigned gen)
{
	size_t n = 0;

	for (struct master_child *c = master.children; c != NULL; c = c->next)
		if ((c->role == MASTER_ROLE_LOGIN ||
		    c->role == MASTER_ROLE_SMTPD) && c->gen == gen &&
		    c->pid != 0)
			n++;
	return n;
}

/* Retire every process of generation gen (0: of every generation), and
 * every mail process: they finish what they have and exit. */
static void
master_retire(unsigned gen)
{
	for (struct master_child *c = master.children; c != NULL; c = c->next) {
		if (c->retired || (c->role != MASTER_ROLE_MAIL && gen != 0 &&
		    c->gen != gen))
			continue;
		c->retired = true;
		if (c->role != MASTER_ROLE_AUTH)
			master_send_simple(c, LOFTD_RETIRE);
	}
	/* An auth process exits when its last channel closes: ours goes
	 * once its generation's login processes are gone. */
	for (struct master_child *c = master.children; c != NULL; c = c->next)
		if (c->role == MASTER_ROLE_AUTH && c->retired &&
		    master_gen_logins(c->gen) == 0)
			master_child_close_chan(c);
}

static void
master_respawn_timeout(void *ctx)
{
	(void)ctx;
	timeout_remove(&master.respawn_to);
	if (!master.stopping)
		master_gen_start();
}

static void
master_gen_failed(void)
{
	if (master.stopping || master.respawn_to != NULL)
		return;
	if (ioloop_now_ms() - master.gen_started_ms < 5000)
		master.respawn_ms = master.respawn_ms == 0 ?
		    MASTER_RESPAWN_MIN_MS : master.respawn_ms * 2;
	else
		master.respawn_ms = 0;
	if (master.respawn_ms > MASTER_RESPAWN_MAX_MS)
		master.respawn_ms = MASTER_RESPAWN_MAX_MS;
	master_listeners_watch(false);
	master_retire(master.gen);
	master.gen = 0;
	if (master.respawn_ms > 0)
		log_error("login processes keep failing: starting new ones in "
		    "%u ms", master.respawn_ms);
	master.respawn_to = timeout_add(master.loop, master.respawn_ms, false,
	    master_respawn_timeout, NULL);
}

/* Whether a bound listener is an SMTP one: then the generation has smtpd
 * processes. */
static bool
master_smtp_listening(void)
{
	for (struct master_listener *l = master.listeners; l != NULL;
	    l = l->next)
		if (loftd_service_smtp(l->service))
			return true;
	return false;
}

/* Start an auth process, login_processes login processes and, when an
 * SMTP listener is bound, smtpd_processes smtpd processes, all wired to
 * it: the logins on its first channels, the smtpd processes after. */
static void
master_gen_start(void)
{
	int pairs[LOFTD_LOGIN_MAX][2], fds[LOFTD_LOGIN_MAX];
	int targets[LOFTD_LOGIN_MAX];
	struct master_child *auth, *c;
	unsigned gen = master.gen + 1, old = master.gen;
	int n = (int)conf_int("login_processes"), ns = 0;

	if (n > LOFTD_LOGIN_MAX)
		n = LOFTD_LOGIN_MAX;
	if (master_smtp_listening())
		ns = (int)conf_int("smtpd_processes");
	if (ns > LOFTD_LOGIN_MAX - n)
		ns = LOFTD_LOGIN_MAX - n;
	for (int i = 0; i < n + ns; i++) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
		    pairs[i]) < 0) {
			log_error("socketpair: %s", strerror(errno));
			while (i-- > 0) {
				close(pairs[i][0]);
				close(pairs[i][1]);
			}
			master_gen_failed();
			return;
		}
		fds[i] = pairs[i][0];
		targets[i] = LOFTD_FD_AUTH + i;
	}
	if (old != 0)
		master_retire(old);
	master.gen = gen;
	master.gen_started_ms = ioloop_now_ms();
	auth = master_spawn(MASTER_ROLE_AUTH, fds, targets, (size_t)(n + ns), n,
	    ns, NULL);
	if (auth != NULL)
		auth->gen = gen;
	for (int i = 0; i < n + ns; i++) {
		close(pairs[i][0]);
		targets[0] = LOFTD_FD_AUTH;
		c = auth == NULL ? NULL : master_spawn(i < n ?
		    MASTER_ROLE_LOGIN : MASTER_ROLE_SMTPD, &pairs[i][1],
		    targets, 1, 0, 0, NULL);
		close(pairs[i][1]);
		if (c != NULL)
			c->gen = gen;
	}
	if (auth == NULL || master_gen_logins(gen) != (size_t)(n + ns)) {
		master_gen_failed();
		return;
	}
	master_listeners_watch(true);
}

/*
 * Connection slots.
 */

static struct master_slot *
master_slot_find(uint32_t id)
{
	uint32_t index = id & (MASTER_SLOTS_MAX - 1);

	if (id == 0 || index >= master.nslots || master.slots[index].id != id)
		return NULL;
	return &master.slots[index];
}

static void
master_slot_release(struct master_slot *s)
{
	if (s->login != NULL || s->mail != NULL || s->id == 0)
		return;
	if (s->fd >= 0)
		close(s->fd);
	free(s->pending);
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	master.used--;
	if (master.stopping && master.used == 0)
		master_retire(0);
}

static struct master_slot *
master_slot_new(const char *ip, uint32_t service)
{
	size_t limit = (size_t)conf_int("connection_limit");
	struct master_slot *s = NULL;

	if (master.nslots < limit && master.nslots < MASTER_SLOTS_MAX &&
	    master.used == master.nslots) {
		master.slots = xreallocarray(master.slots, master.nslots + 1,
		    sizeof(*master.slots));
		s = &master.slots[master.nslots++];
		memset(s, 0, sizeof(*s));
	} else {
		for (size_t i = 0; i < master.nslots; i++) {
			size_t k = (master.hint + i) % master.nslots;

			if (master.slots[k].id == 0) {
				s = &master.slots[k];
				master.hint = k + 1;
				break;
			}
		}
	}
	if (s == NULL)
		return NULL;
	if (++master.seq >= (1u << (32 - MASTER_SLOT_INDEX_BITS)))
		master.seq = 1;
	s->id = master.seq << MASTER_SLOT_INDEX_BITS |
	    (uint32_t)(s - master.slots);
	s->fd = -1;
	s->service = service;
	strlcpy(s->ip, ip, sizeof(s->ip));
	master.used++;
	return s;
}

static size_t
master_ip_count(const char *ip)
{
	size_t n = 0;

	for (size_t i = 0; i < master.nslots; i++)
		if (master.slots[i].id != 0 &&
		    strcmp(master.slots[i].ip, ip) == 0)
			n++;
	return n;
}

/* Let go of slot s for child c (its login or mail side). */
static void
master_slot_drop(struct master_slot *s, struct master_child *c)
{
	if (s->login == c) {
		s->login = NULL;
		c->conns--;
	}
	if (s->mail == c) {
		s->mail = NULL;
		if (--c->conns == 0)
			c->idle_since_ms = ioloop_now_ms();
	}
	master_slot_release(s);
}

/* Retire the mail processes that have had no session for a while; the
 * master sends them no new one, so none is lost on the way. */
static void
master_mail_idle_check(void *ctx)
{
	uint64_t now = ioloop_now_ms();
	uint64_t idle_ms = (uint64_t)conf_time("mail_process_idle_time") * 1000;

	(void)ctx;
	for (struct master_child *c = master.children; c != NULL; c = c->next)
		if (c->role == MASTER_ROLE_MAIL && !c->retired &&
		    c->conns == 0 && c->deliveries == 0 &&
		    c->idle_since_ms != 0 &&
		    now - c->idle_since_ms >= idle_ms) {
			c->retired = true;
			master_send_simple(c, LOFTD_RETIRE);
		}
}

/*
 * Accepting.
 */

static void
master_refuse(int fd, const char *ip, const char *why, const char *line)
{
	log_info("refused connection from %s: %s", ip, why);
	(void)send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

/* The least busy process of role (LOGIN or SMTPD) of the current
 * generation. */
static struct master_child *
master_pick(enum master_role role)
{
	struct master_child *best = NULL;

	for (struct master_child *c = master.children; c != NULL; c = c->next)
		if (c->role == role && !c->retired &&
		    c->gen == master.gen && c->pid != 0 && c->chan != NULL &&
		    (best == NULL || c->conns < best->conns))
			best = c;
	return best;
}

/* The process that takes a new connection of service. */
static struct master_child *
master_pick_for(uint32_t service)
{
	if (loftd_service_lmtp(service))
		return master_lmtp();
	return master_pick(loftd_service_smtp(service) ? MASTER_ROLE_SMTPD :
	    MASTER_ROLE_LOGIN);
}

static void
master_accept_one(struct master_listener *l, int fd,
    const struct net_addr *peer)
{
	char ip[NET_ADDR_STR_MAX], lip[NET_ADDR_STR_MAX];
	struct net_addr local;
	struct master_child *login;
	struct master_slot *s;
	size_t per_ip = (size_t)conf_int("client_connection_limit");
	bool imap = l->service == LOFTD_SVC_IMAP;
	bool lmtp = loftd_service_lmtp(l->service);
	bool unix_sock = l->service == LOFTD_SVC_LMTP_UNIX;
	bool smtp = loftd_service_smtp(l->service) || lmtp;
	int one = 1;

	net_addr_str(peer, ip, sizeof(ip));
	if (unix_sock)
		strlcpy(ip, "local", sizeof(ip));
	/* Replies are small and often end in a short write (POP3's ".",
	 * a tagged OK): without this each would wait for the client's
	 * delayed ACK, 40 ms a command. */
	if (!unix_sock)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
	local.len = sizeof(local.ss);
	if (unix_sock || getsockname(fd, (struct sockaddr *)&local.ss,
	    &local.len) < 0)
		local.ss.ss_family = AF_UNSPEC;
	net_addr_str(&local, lip, sizeof(lip));
	if (master.used >= (size_t)conf_int("connection_limit")) {
		master_refuse(fd, ip, "connection_limit reached", smtp ?
		    "421 4.7.0 Error: too many connections\r\n" : imap ?
		    "* BYE [UNAVAILABLE] Too many connections\r\n" :
		    "-ERR [SYS/TEMP] Too many connections\r\n");
		return;
	}
	/* The MTA in front of loft opens as many LMTP connections as its
	 * concurrency says (Postfix: 20 by default), all from one address;
	 * connection_limit still bounds them. */
	if (!lmtp && master_ip_count(ip) >= per_ip) {
		master_refuse(fd, ip, "client_connection_limit reached", smtp ?
		    "421 4.7.0 Error: too many connections from your "
		    "address\r\n" : imap ?
		    "* BYE [UNAVAILABLE] Too many connections from your "
		    "address\r\n" : "-ERR [SYS/TEMP] Too many connections "
		    "from your address\r\n");
		return;
	}
	if ((login = master_pick_for(l->service)) == NULL ||
	    (s = master_slot_new(ip, l->service)) == NULL) {
		master_refuse(fd, ip, lmtp ? "no lmtp process" :
		    smtp ? "no smtpd process" :
		    "no login process", smtp ?
		    "421 4.3.2 Service not available, try again later\r\n" :
		    imap ? "* BYE [UNAVAILABLE] Server not ready, try again "
		    "later\r\n" : "-ERR [SYS/TEMP] Server not ready, try "
		    "again later\r\n");
		return;
	}
	s->rport = net_addr_port(peer);
	ipc_msg_init(&master_out, LOFTD_CONN_NEW, 0);
	ipc_add_u32(&master_out, s->id);
	ipc_add_u32(&master_out, l->service);
	ipc_add_u32(&master_out, l->tls);
	ipc_add_str(&master_out, unix_sock ? "" : ip);
	ipc_add_u32(&master_out, unix_sock ? 0 : net_addr_port(peer));
	ipc_add_str(&master_out, unix_sock ? "" : lip);
	ipc_add_u32(&master_out, unix_sock ? 0 : net_addr_port(&local));
	ipc_msg_set_fd(&master_out, fd);
	if (master_send(login, &master_out) < 0) {
		memset(s, 0, sizeof(*s));
		s->fd = -1;
		master.used--;
		return;
	}
	s->login = login;
	login->conns++;
}

static void
master_accept(void *ctx)
{
	struct master_listener *l = ctx;
	struct net_addr peer;
	int fd;

	for (int i = 0; i < MASTER_ACCEPT_BATCH; i++) {
		fd = net_accept(l->fd, &peer);
		if (fd >= 0) {
			master_accept_one(l, fd, &peer);
			continue;
		}
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM)
			log_error("accept on %s: %s", l->spec,
			    strerror(errno));
		break;
	}
}

/*
 * Logins: redeem the token, pick or start the mail process.
 */

static struct master_child *
master_mail_for(const struct user *u)
{
	for (struct master_child *c = master.children; c != NULL; c = c->next)
		if (c->role == MASTER_ROLE_MAIL && !c->retired &&
		    c->pid != 0 && c->chan != NULL && c->uid == u->uid &&
		    c->gid == u->gid && c->system == u->system)
			return c;
	if (u->uid == 0)
		return NULL;
	struct master_child *c = master_spawn(MASTER_ROLE_MAIL, NULL, NULL, 0,
	    0, 0, u);
	if (c != NULL) {
		c->uid = u->uid;
		c->gid = u->gid;
		c->system = u->system;
		c->idle_since_ms = ioloop_now_ms();
	}
	return c;
}

static void
master_login_result(struct master_slot *s, bool ok)
{
	if (s->login == NULL)
		return;
	ipc_msg_init(&master_out, LOFTD_LOGIN_RESULT, 0);
	ipc_add_u32(&master_out, s->id);
	ipc_add_u32(&master_out, ok);
	(void)master_send(s->login, &master_out);
}

static void
master_login_fail(struct master_slot *s)
{
	s->redeeming = false;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	free(s->pending);
	s->pending = NULL;
	master_login_result(s, false);
}

static void
master_handle_login(struct master_child *c, struct ipc_msg *m)
{
	const unsigned char *token, *pending;
	size_t token_len, pending_len;
	uint32_t id, relayed, secured;
	struct master_child *auth;
	struct master_slot *s;
	const char *error;
	int fd = ipc_msg_take_fd(m);

	ipc_get_u32(m, &id);
	ipc_get_data(m, &token, &token_len);
	ipc_get_u32(m, &relayed);
	ipc_get_u32(m, &secured);
	ipc_get_data(m, &pending, &pending_len);
	s = master_slot_find(id);
	if (ipc_get_end(m, &error) < 0 || fd < 0 || s == NULL ||
	    s->login != c || s->redeeming || s->mail != NULL ||
	    pending_len > LOFTD_PENDING_MAX) {
		log_warning("login process %ld: bad login record for "
		    "connection %u", (long)c->pid, id);
		if (fd >= 0)
			close(fd);
		if (s != NULL && s->login == c)
			master_login_result(s, false);
		return;
	}
	s->fd = fd;
	s->relayed = relayed != 0;
	s->secured = secured != 0;
	s->pending = pending_len > 0 ? xmalloc(pending_len) : NULL;
	if (pending_len > 0)
		memcpy(s->pending, pending, pending_len);
	s->pending_len = pending_len;
	s->redeeming = true;
	auth = master_gen_auth(c->gen);
	if (auth == NULL ||
	    auth_proto_user_req_encode(&master_out, id, token, token_len,
	    &error) < 0 || master_send(auth, &master_out) < 0)
		master_login_fail(s);
}

static void
master_handle_user(struct master_child *auth, struct ipc_msg *m)
{
	struct auth_user_resp r;
	struct master_child *mail;
	struct master_slot *s;
	const char *error;

	if (auth_proto_user_resp_decode(m, &r, &error) < 0) {
		log_warning("auth process %ld: %s", (long)auth->pid, error);
		master_child_close_chan(auth);
		return;
	}
	s = master_slot_find(r.id);
	if (s == NULL || !s->redeeming) {
		user_free(&r.user);
		return;
	}
	if (r.result != AUTH_RESULT_OK || r.user == NULL ||
	    strcmp(r.service, loftd_service_name(s->service)) != 0 ||
	    strcmp(r.ip, s->ip) != 0) {
		log_warning("login from %s not confirmed by auth: %s", s->ip,
		    r.result == AUTH_RESULT_OK ? "service or address differ" :
		    r.reason);
		user_free(&r.user);
		master_login_fail(s);
		return;
	}
	mail = master.stopping ? NULL : master_mail_for(r.user);
	if (mail == NULL) {
		log_error("user=<%s>: no mail process", r.user->name);
		user_free(&r.user);
		master_login_fail(s);
		return;
	}
	ipc_msg_init(&master_out, LOFTD_SESSION, 0);
	ipc_add_u32(&master_out, s->id);
	ipc_add_u32(&master_out, s->service);
	ipc_add_str(&master_out, s->ip);
	ipc_add_u32(&master_out, s->rport);
	ipc_add_u32(&master_out, s->secured);
	ipc_add_data(&master_out, s->pending, s->pending_len);
	auth_proto_add_user(&master_out, r.user);
	user_free(&r.user);
	ipc_msg_set_fd(&master_out, s->fd);
	s->fd = -1;
	if (master_send(mail, &master_out) < 0) {
		master_login_fail(s);
		return;
	}
	free(s->pending);
	s->pending = NULL;
	s->redeeming = false;
	s->mail = mail;
	mail->conns++;
	master_login_result(s, true);
	if (!s->relayed && s->login != NULL) {
		s->login->conns--;
		s->login = NULL;
	}
}

static void
master_handle_done(struct master_child *c, struct ipc_msg *m)
{
	struct master_slot *s;
	const char *error;
	uint32_t id;

	ipc_get_u32(m, &id);
	if (ipc_get_end(m, &error) < 0) {
		log_warning("%s process %ld: %s", master_role_names[c->role],
		    (long)c->pid, error);
		return;
	}
	if ((s = master_slot_find(id)) != NULL &&
	    (s->login == c || s->mail == c)) {
		if (s->login == c && s->redeeming)
			master_login_fail(s);
		master_slot_drop(s, c);
	}
}

/*
 * The queue manager, and the deliveries it asks for.
 */

/* Whether a qmgr process should run: mail is received by SMTP (so there
 * is a queue) and queue_manager is on. */
static bool
master_qmgr_wanted(void)
{
	return !master.stopping && master_conf_smtp() &&
	    conf_bool("queue_manager");
}

/* The qmgr process that takes work, or NULL. */
static struct master_child *
master_qmgr(void)
{
	for (struct master_child *c = master.children; c != NULL; c = c->next)
		if (c->role == MASTER_ROLE_QMGR && !c->retired &&
		    c->pid != 0 && c->chan != NULL)
			return c;
	return NULL;
}

/* Whether any qmgr process is still there, retired or not: a new one
 * starts only when the last has exited, so that two never work the same
 * queue (the queue's locks would keep them from delivering a message
 * twice, but each would keep finding the other's messages busy). */
static bool
master_qmgr_exists(void)
{
	for (struct master_child *c = master.children; c != NULL; c = c->next)
		if (c->role == MASTER_ROLE_QMGR && c->pid != 0)
			return true;
	return false;
}

static void
master_qmgr_timeout(void *ctx)
{
	(void)ctx;
	timeout_remove(&master.qmgr_to);
	master_qmgr_start();
}

/* The delay before a single process (qmgr, lmtp) starts again: none
 * after a retired one left, else growing while they keep dying young
 * (started: when the last one started). */
static unsigned
master_respawn_delay(unsigned prev_ms, uint64_t started_ms, bool failed,
    const char *what)
{
	unsigned ms;

	if (!failed || ioloop_now_ms() - started_ms >= 5000)
		return 0;
	ms = prev_ms == 0 ? MASTER_RESPAWN_MIN_MS : prev_ms * 2;
	if (ms > MASTER_RESPAWN_MAX_MS)
		ms = MASTER_RESPAWN_MAX_MS;
	if (ms > MASTER_RESPAWN_MIN_MS)
		log_error("the %s keeps failing: starting a new one in %u ms",
		    what, ms);
	return ms;
}

/* Start a qmgr process soon: at once after a retired one left, after a
 * delay that grows while they keep dying young. */
static void
master_qmgr_later(bool failed)
{
	if (!master_qmgr_wanted() || master.qmgr_to != NULL)
		return;
	master.qmgr_respawn_ms = master_respawn_delay(master.qmgr_respawn_ms,
	    master.qmgr_started_ms, failed, "queue manager");
	master.qmgr_to = timeout_add(master.loop, master.qmgr_respawn_ms,
	    false, master_qmgr_timeout, NULL);
}

static void
master_qmgr_start(void)
{
	timeout_remove(&master.qmgr_to);
	if (!master_qmgr_wanted() || master_qmgr_exists())
		return;
	master.qmgr_started_ms = ioloop_now_ms();
	if (master_spawn(MASTER_ROLE_QMGR, NULL, NULL, 0, 0, 0, NULL) == NULL)
		master_qmgr_later(true);
}

/* After a reload: the running qmgr finishes what it has under way and
 * exits; its successor, with the new configuration, starts then
 * (master_child_gone). */
static void
master_qmgr_reload(void)
{
	struct master_child *q = master_qmgr();

	if (q == NULL) {
		master_qmgr_start();
		return;
	}
	q->retired = true;
	master_send_simple(q, LOFTD_RETIRE);
}

/*
 * The lmtp process: one, outside the generations (it needs no auth
 * channel: the master looks recipients up), running while an LMTP
 * listener is bound.
 */

static bool
master_lmtp_wanted(void)
{
	if (master.stopping)
		return false;
	for (struct master_listener *l = master.listeners; l != NULL;
	    l = l->next)
		if (loftd_service_lmtp(l->service))
			return true;
	return false;
}

/* The lmtp process that takes new connections, or NULL. */
static struct master_child *
master_lmtp(void)
{
	for (struct master_child *c = master.children; c != NULL; c = c->next)
		if (c->role == MASTER_ROLE_LMTP && !c->retired &&
		    c->pid != 0 && c->chan != NULL)
			return c;
	return NULL;
}

static void
master_lmtp_timeout(void *ctx)
{
	(void)ctx;
	timeout_remove(&master.lmtp_to);
	master_lmtp_start();
}

static void
master_lmtp_later(bool failed)
{
	if (!master_lmtp_wanted() || master.lmtp_to != NULL)
		return;
	master.lmtp_respawn_ms = master_respawn_delay(master.lmtp_respawn_ms,
	    master.lmtp_started_ms, failed, "lmtp process");
	master.lmtp_to = timeout_add(master.loop, master.lmtp_respawn_ms,
	    false, master_lmtp_timeout, NULL);
}

static void
master_lmtp_start(void)
{
	timeout_remove(&master.lmtp_to);
	if (!master_lmtp_wanted() || master_lmtp() != NULL)
		return;
	master.lmtp_started_ms = ioloop_now_ms();
	if (master_spawn(MASTER_ROLE_LMTP, NULL, NULL, 0, 0, 0, NULL) == NULL)
		master_lmtp_later(true);
}

/* After a reload: a new lmtp process, with the new configuration, takes
 * new connections at once, and the old one ends its sessions and exits.
 * Unlike two qmgr processes, two lmtp processes share nothing (each
 * message is in a spool file of its own). */
static void
master_lmtp_reload(void)
{
	struct master_child *old = master_lmtp();

	if (old != NULL) {
		old->retired = true;
		master_send_simple(old, LOFTD_RETIRE);
	}
	master_lmtp_start();
}

/* LOFTD_QUEUED from an smtpd process: pass it on to the qmgr process. A
 * notice lost here (no qmgr now) costs only time: a starting qmgr scans
 * the whole queue. */
static void
master_relay_queued(struct master_child *c, struct ipc_msg *m)
{
	struct master_child *q;
	const char *id, *error;

	ipc_get_str(m, &id);
	if (ipc_get_end(m, &error) < 0 || !smtp_queue_id_valid(id)) {
		log_warning("smtpd process %ld: bad queued record",
		    (long)c->pid);
		return;
	}
	if ((q = master_qmgr()) == NULL)
		return;
	ipc_msg_init(&master_out, LOFTD_QUEUED, 0);
	ipc_add_str(&master_out, id);
	(void)master_send(q, &master_out);
}

/* SIGUSR1: ask the qmgr process to deliver deferred mail now. */
static void
master_sigusr1(int signo, void *ctx)
{
	struct master_child *q = master_qmgr();

	(void)signo;
	(void)ctx;
	if (q == NULL) {
		log_warning("flush: no queue manager is running");
		return;
	}
	log_info("flush: deferred mail is tried now");
	master_send_simple(q, LOFTD_FLUSH);
}

static void
master_deliver_answer(struct master_child *q, uint32_t req,
    enum loftd_dstatus status, const char *dsn, const char *text)
{
	if (q == NULL || q->chan == NULL)
		return;
	ipc_msg_init(&master_out, LOFTD_DELIVER_RESULT, 0);
	ipc_add_u32(&master_out, req);
	ipc_add_u32(&master_out, (uint32_t)status);
	ipc_add_str(&master_out, dsn);
	ipc_add_str(&master_out, text);
	(void)master_send(q, &master_out);
}

/* The names a delivery's user may be known by, in the order they are
 * tried: as given, without its recipient_delimiter extension (alice+tag:
 * alice, as Postfix's local(8)), then those in lower case (smtpd
 * accepted the recipient without case, as the auth process matches it).
 * Returns how many were written into names. */
static int
master_deliver_names(const char *name,
    char names[4][USER_NAME_MAX + 1])
{
	const char *delim = conf_str("recipient_delimiter");
	size_t cut = delim[0] != '\0' ? strcspn(name, delim) : strlen(name);
	int n = 0, k;

	strlcpy(names[n++], name, USER_NAME_MAX + 1);
	if (cut > 0 && name[cut] != '\0') {
		memcpy(names[n], name, cut);
		names[n++][cut] = '\0';
	}
	for (k = n; k-- > 0;) {
		bool upper = false;

		strlcpy(names[n], names[k], USER_NAME_MAX + 1);
		for (char *p = names[n]; *p != '\0'; p++)
			if (*p >= 'A' && *p <= 'Z') {
				*p = (char)(*p - 'A' + 'a');
				upper = true;
			}
		if (upper)
			n++;
	}
	return n;
}

/*
 * The user a delivery is for, looked up here, as root, with the
 * configuration the master runs with: 1 and *u_r, 0 when no name is a
 * user, -1 when the user database cannot be read (*error_r).
 *
 * The master reads the user database itself here, which it does for
 * nothing else: the auth process's master channel redeems login tokens
 * only (server/auth, not ours to change in this step). A lookup is one
 * read of a local file (or getpwnam), done while the loop waits; see
 * doc/design.md.
 */
static int
master_deliver_lookup(const char *name, struct user **u_r,
    const char **error_r)
{
	char names[4][USER_NAME_MAX + 1];
	const char *error;
	int n, ret;

	n = master_deliver_names(name, names);
	for (int i = 0; i < n; i++) {
		if (user_name_valid(names[i], &error) < 0)
			continue;
		if ((ret = user_lookup(names[i], u_r, &error)) != 0) {
			*error_r = error;
			return ret;
		}
	}
	return 0;
}

static void
master_delivery_done(struct master_delivery *d)
{
	struct master_delivery **pp;

	for (pp = &master.deliveries; *pp != d; pp = &(*pp)->next)
		;
	*pp = d->next;
	master.ndeliveries--;
	if (--d->mail->deliveries == 0 && d->mail->conns == 0)
		d->mail->idle_since_ms = ioloop_now_ms();
	free(d);
}

/* The id of the next request to a mail process (never 0). */
static uint32_t
master_delivery_next(void)
{
	if (++master.delivery_seq == 0)
		master.delivery_seq = 1;
	return master.delivery_seq;
}

/* Remember that mail owes an answer to request id, which stands for
 * from's req (a delivery, or with quota an RCPT's quota question). */
static void
master_delivery_add(struct master_child *mail, uint32_t id,
    struct master_child *from, uint32_t req, bool quota)
{
	struct master_delivery *d = xcalloc(1, sizeof(*d));

	d->id = id;
	d->req = req;
	d->mail = mail;
	d->from = from;
	d->quota = quota;
	d->next = master.deliveries;
	master.deliveries = d;
	master.ndeliveries++;
	mail->deliveries++;
}

/* Pass the checked request on to the mail process of u's owner. */
static void
master_deliver_start(struct master_child *q, uint32_t req, int fd,
    const char *qid, const char *rcpt, const char *sender,
    const struct user *u)
{
	struct master_child *mail = master_mail_for(u);
	uint32_t id;
	char text[128];

	if (mail == NULL) {
		close(fd);
		snprintf(text, sizeof(text), "no mail process for uid %lu",
		    (unsigned long)u->uid);
		master_deliver_answer(q, req, LOFTD_DELIVER_TEMP, "4.3.0",
		    text);
		return;
	}
	id = master_delivery_next();
	ipc_msg_init(&master_out, LOFTD_DELIVER, 0);
	ipc_add_u32(&master_out, id);
	ipc_add_str(&master_out, qid);
	ipc_add_str(&master_out, rcpt);
	ipc_add_str(&master_out, sender);
	auth_proto_add_user(&master_out, u);
	ipc_msg_set_fd(&master_out, fd);
	if (master_send(mail, &master_out) < 0) {
		master_deliver_answer(q, req, LOFTD_DELIVER_TEMP, "4.3.0",
		    "mail process unreachable");
		return;
	}
	master_delivery_add(mail, id, q, req, false);
}

/* localcmd's answers go the way a mail process's do (localcmd.h). */
static void
master_localcmd_answer(void *asker, uint32_t req, enum loftd_dstatus status,
    const char *dsn, const char *text)
{
	master_deliver_answer(asker, req, status, dsn, text);
}

/* LOFTD_DELIVER_LOCAL from the qmgr process: an alias's command or file,
 * which localcmd checks against its own expansion and runs. */
static void
master_handle_deliver_local(struct master_child *q, struct ipc_msg *m)
{
	const char *error;

	if (localcmd_request(q, m, &error) < 0) {
		log_warning("qmgr process %ld: bad local delivery record: %s",
		    (long)q->pid, error);
		master_child_close_chan(q);
	}
}

/* LOFTD_DELIVER from the qmgr process: check, look up, pass on. Every
 * request that parses is answered exactly once (here, or when its mail
 * process answers or exits). */
static void
master_handle_deliver(struct master_child *q, struct ipc_msg *m)
{
	const char *qid, *user, *rcpt, *sender, *error;
	struct user *u = NULL;
	char text[600];
	uint32_t req;
	int fd = ipc_msg_take_fd(m), ret;

	ipc_get_u32(m, &req);
	ipc_get_str(m, &qid);
	ipc_get_str(m, &user);
	ipc_get_str(m, &rcpt);
	ipc_get_str(m, &sender);
	if (ipc_get_end(m, &error) < 0 || fd < 0) {
		/* A bug in qmgr: it would wait for an answer forever. */
		log_warning("%s process %ld: bad delivery record: %s",
		    master_role_names[q->role], (long)q->pid,
		    fd < 0 ? "no descriptor" : error);
		if (fd >= 0)
			close(fd);
		master_child_close_chan(q);
		return;
	}
	if (!smtp_queue_id_valid(qid) || strlen(user) > USER_NAME_MAX ||
	    strlen(rcpt) > MASTER_ADDR_MAX || strlen(sender) >
	    MASTER_ADDR_MAX) {
		close(fd);
		master_deliver_answer(q, req, LOFTD_DELIVER_PERM, "5.1.3",
		    "bad delivery request");
		return;
	}
	if (master.stopping || master.ndeliveries >= LOFTD_DELIVER_MAX) {
		close(fd);
		master_deliver_answer(q, req, LOFTD_DELIVER_TEMP, "4.3.0",
		    master.stopping ? "mail system is shutting down" :
		    "too many deliveries at once");
		return;
	}
	if ((ret = master_deliver_lookup(user, &u, &error)) <= 0) {
		close(fd);
		if (ret < 0)
			snprintf(text, sizeof(text), "user lookup: %s", error);
		master_deliver_answer(q, req, ret < 0 ? LOFTD_DELIVER_TEMP :
		    LOFTD_DELIVER_PERM, ret < 0 ? "4.3.0" : "5.1.1", ret < 0 ?
		    text : "unknown user");
		return;
	}
	master_deliver_start(q, req, fd, qid, rcpt, sender, u);
	user_free(&u);
}

/*
 * LOFTD_DELIVER_BATCH from the qmgr process: the items of a batch for one
 * user are collected as they come (loftd.h), then checked as single
 * deliveries are, the user looked up once for all of them, and the ones
 * that pass sent on to the mail process of its owner as one batch, each
 * remembered (master_delivery_add) and so answered exactly once: by the
 * mail process, or here when it exits first.
 */

static void
master_batch_free(struct master_batch **bp)
{
	struct master_batch *b = *bp;

	if (b == NULL)
		return;
	*bp = NULL;
	for (size_t i = 0; i < b->n; i++) {
		if (b->item[i].fd >= 0)
			close(b->item[i].fd);
		free(b->item[i].qid);
		free(b->item[i].rcpt);
		free(b->item[i].sender);
	}
	free(b->user);
	free(b);
}

/* Answer item i of b (and let its content go). */
static void
master_batch_answer(struct master_child *q, struct master_batch *b, size_t i,
    enum loftd_dstatus status, const char *dsn, const char *text)
{
	if (b->item[i].fd >= 0)
		close(b->item[i].fd);
	b->item[i].fd = -1;
	master_deliver_answer(q, b->item[i].req, status, dsn, text);
}

/* Every item not answered yet gets the same answer. */
static void
master_batch_answer_rest(struct master_child *q, struct master_batch *b,
    enum loftd_dstatus status, const char *dsn, const char *text)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->item[i].fd >= 0)
			master_batch_answer(q, b, i, status, dsn, text);
}

/* Send the items still holding their content to mail, as one batch. */
static void
master_batch_send(struct master_child *q, struct master_batch *b,
    struct master_child *mail, const struct user *u)
{
	size_t left = 0;
	uint32_t id;

	for (size_t i = 0; i < b->n; i++)
		left += b->item[i].fd >= 0;
	for (size_t i = 0; i < b->n; i++) {
		if (b->item[i].fd < 0)
			continue;
		id = master_delivery_next();
		ipc_msg_init(&master_out, LOFTD_DELIVER_BATCH, 0);
		ipc_add_u32(&master_out, id);
		ipc_add_str(&master_out, b->item[i].qid);
		ipc_add_str(&master_out, b->item[i].rcpt);
		ipc_add_str(&master_out, b->item[i].sender);
		ipc_add_u32(&master_out, (uint32_t)--left);
		auth_proto_add_user(&master_out, u);
		ipc_msg_set_fd(&master_out, b->item[i].fd);
		b->item[i].fd = -1;
		if (master_send(mail, &master_out) < 0) {
			/* What was sent is stored by the mail process
			 * (loftd.h); the rest is deferred. */
			master_deliver_answer(q, b->item[i].req,
			    LOFTD_DELIVER_TEMP, "4.3.0",
			    "mail process unreachable");
			master_batch_answer_rest(q, b, LOFTD_DELIVER_TEMP,
			    "4.3.0", "mail process unreachable");
			return;
		}
		master_delivery_add(mail, id, q, b->item[i].req, false);
	}
}

/* The whole batch is in: check each item, look the user up, pass on. */
static void
master_batch_run(struct master_child *q, struct master_batch *b)
{
	struct master_child *mail;
	struct user *u = NULL;
	const char *error;
	char text[600];
	size_t room;
	int ret;

	for (size_t i = 0; i < b->n; i++)
		if (!smtp_queue_id_valid(b->item[i].qid) ||
		    strlen(b->item[i].rcpt) > MASTER_ADDR_MAX ||
		    strlen(b->item[i].sender) > MASTER_ADDR_MAX ||
		    strlen(b->user) > USER_NAME_MAX)
			master_batch_answer(q, b, i, LOFTD_DELIVER_PERM,
			    "5.1.3", "bad delivery request");
	room = master.ndeliveries < LOFTD_DELIVER_MAX ?
	    LOFTD_DELIVER_MAX - master.ndeliveries : 0;
	for (size_t i = 0; i < b->n; i++) {
		if (b->item[i].fd < 0)
			continue;
		if (master.stopping || room == 0)
			master_batch_answer(q, b, i, LOFTD_DELIVER_TEMP,
			    "4.3.0", master.stopping ? "mail system is "
			    "shutting down" : "too many deliveries at once");
		else
			room--;
	}
	if (strlen(b->user) > USER_NAME_MAX)
		return;
	if ((ret = master_deliver_lookup(b->user, &u, &error)) <= 0) {
		if (ret < 0)
			snprintf(text, sizeof(text), "user lookup: %s", error);
		master_batch_answer_rest(q, b, ret < 0 ? LOFTD_DELIVER_TEMP :
		    LOFTD_DELIVER_PERM, ret < 0 ? "4.3.0" : "5.1.1", ret < 0 ?
		    text : "unknown user");
		return;
	}
	if ((mail = master_mail_for(u)) == NULL) {
		snprintf(text, sizeof(text), "no mail process for uid %lu",
		    (unsigned long)u->uid);
		master_batch_answer_rest(q, b, LOFTD_DELIVER_TEMP, "4.3.0",
		    text);
	} else
		master_batch_send(q, b, mail, u);
	user_free(&u);
}

/* One LOFTD_DELIVER_BATCH item. A record that breaks the batch's rules
 * (loftd.h) is qmgr's bug: the channel is closed, as for any bad
 * record. */
static void
master_handle_deliver_batch(struct master_child *q, struct ipc_msg *m)
{
	const char *qid, *user, *rcpt, *sender, *error;
	struct master_batch *b = q->inbatch;
	struct master_batch_item *bi;
	uint32_t req, left;
	int fd = ipc_msg_take_fd(m);

	ipc_get_u32(m, &req);
	ipc_get_str(m, &qid);
	ipc_get_str(m, &user);
	ipc_get_str(m, &rcpt);
	ipc_get_str(m, &sender);
	ipc_get_u32(m, &left);
	error = NULL;
	if (ipc_get_end(m, &error) < 0 || fd < 0)
		error = fd < 0 ? "no descriptor" : error;
	else if (b == NULL && left >= LOFTD_BATCH_MAX)
		error = "batch too large";
	else if (b != NULL && (left + 1 != b->left ||
	    strcmp(user, b->user) != 0))
		error = "item does not continue its batch";
	if (error != NULL) {
		log_warning("%s process %ld: bad delivery batch record: %s",
		    master_role_names[q->role], (long)q->pid, error);
		if (fd >= 0)
			close(fd);
		master_child_close_chan(q);
		return;
	}
	if (b == NULL) {
		b = q->inbatch = xcalloc(1, sizeof(*b));
		b->user = xstrdup(user);
	}
	bi = &b->item[b->n++];
	bi->req = req;
	bi->fd = fd;
	bi->qid = xstrdup(qid);
	bi->rcpt = xstrdup(rcpt);
	bi->sender = xstrdup(sender);
	b->left = left;
	if (left == 0) {
		q->inbatch = NULL;
		master_batch_run(q, b);
		master_batch_free(&b);
	}
}

static void
master_lmtp_rcpt_answer(struct master_child *c, uint32_t req,
    enum loftd_dstatus status, const char *dsn, const char *text)
{
	ipc_msg_init(&master_out, LOFTD_LMTP_RCPT_RESULT, 0);
	ipc_add_u32(&master_out, req);
	ipc_add_u32(&master_out, (uint32_t)status);
	ipc_add_str(&master_out, dsn);
	ipc_add_str(&master_out, text);
	(void)master_send(c, &master_out);
}

/* Answer the asker of d, as the kind of request it made. */
static void
master_delivery_answer(struct master_delivery *d, enum loftd_dstatus status,
    const char *dsn, const char *text)
{
	if (!d->quota)
		master_deliver_answer(d->from, d->req, status, dsn, text);
	else if (d->from != NULL && d->from->chan != NULL)
		master_lmtp_rcpt_answer(d->from, d->req, status, dsn, text);
}

/* Ask the mail process of u's owner whether size more fits u's quota;
 * its answer is the RCPT's (master_handle_deliver_result). */
static void
master_quota_check(struct master_child *c, uint32_t req, uint64_t size,
    const struct user *u)
{
	struct master_child *mail = master_mail_for(u);
	uint32_t id;

	if (mail == NULL) {
		master_lmtp_rcpt_answer(c, req, LOFTD_DELIVER_TEMP, "4.3.0",
		    "no mail process for the recipient");
		return;
	}
	id = master_delivery_next();
	ipc_msg_init(&master_out, LOFTD_QUOTA_CHECK, 0);
	ipc_add_u32(&master_out, id);
	ipc_add_u64(&master_out, size);
	auth_proto_add_user(&master_out, u);
	if (master_send(mail, &master_out) < 0) {
		master_lmtp_rcpt_answer(c, req, LOFTD_DELIVER_TEMP, "4.3.0",
		    "mail process unreachable");
		return;
	}
	master_delivery_add(mail, id, c, req, true);
}

/*
 * LOFTD_LMTP_RCPT: is the name a user, by the lookup a delivery to it
 * will make, and does the size the client announced fit under the
 * user's quota limit, with what the mailbox holds already? The usage is
 * in the user's index, which only the mail process of its owner opens:
 * when a limit applies, that process is asked (master_quota_check).
 */
static void
master_handle_lmtp_rcpt(struct master_child *c, struct ipc_msg *m)
{
	const char *user, *error;
	struct user *u = NULL;
	char text[600];
	uint64_t size, limit;
	uint32_t req;
	bool temp = conf_bool("quota_full_tempfail");
	int ret;

	ipc_get_u32(m, &req);
	ipc_get_str(m, &user);
	ipc_get_u64(m, &size);
	if (ipc_get_end(m, &error) < 0) {
		/* A bug in the lmtp process: it would wait forever. */
		log_warning("lmtp process %ld: bad recipient record: %s",
		    (long)c->pid, error);
		master_child_close_chan(c);
		return;
	}
	if (strlen(user) > USER_NAME_MAX ||
	    (ret = master_deliver_lookup(user, &u, &error)) == 0) {
		master_lmtp_rcpt_answer(c, req, LOFTD_DELIVER_PERM, "5.1.1",
		    "unknown user");
		return;
	}
	if (ret < 0) {
		snprintf(text, sizeof(text), "user lookup: %s", error);
		master_lmtp_rcpt_answer(c, req, LOFTD_DELIVER_TEMP, "4.3.0",
		    text);
		return;
	}
	/* The limit as the store enforces it (store_open). */
	limit = u->has_quota ? u->quota :
	    (uint64_t)conf_int("mailbox_size_limit");
	if (limit > 0 && size > limit)
		master_lmtp_rcpt_answer(c, req, temp ? LOFTD_DELIVER_TEMP :
		    LOFTD_DELIVER_PERM, temp ? "4.2.2" : "5.2.2",
		    "message larger than the mailbox quota");
	else if (limit > 0)
		master_quota_check(c, req, size, u);
	else
		master_lmtp_rcpt_answer(c, req, LOFTD_DELIVER_OK, "2.1.5",
		    "ok");
	user_free(&u);
}

/* LOFTD_DELIVER_RESULT from a mail process: back to qmgr or lmtp. */
static void
master_handle_deliver_result(struct master_child *mail, struct ipc_msg *m)
{
	struct master_delivery *d;
	const char *dsn, *text, *error;
	uint32_t id, status;

	ipc_get_u32(m, &id);
	ipc_get_u32(m, &status);
	ipc_get_str(m, &dsn);
	ipc_get_str(m, &text);
	if (ipc_get_end(m, &error) < 0) {
		log_warning("mail process %ld: %s", (long)mail->pid, error);
		return;
	}
	for (d = master.deliveries; d != NULL; d = d->next)
		if (d->id == id && d->mail == mail)
			break;
	if (d == NULL) {
		log_warning("mail process %ld: result for an unknown "
		    "delivery %u", (long)mail->pid, id);
		return;
	}
	if (status > LOFTD_DELIVER_PERM)
		status = LOFTD_DELIVER_TEMP;
	master_delivery_answer(d, (enum loftd_dstatus)status, dsn, text);
	master_delivery_done(d);
}

/* Child c exited: answer what its mail process still had (the message
 * may or may not be stored: deferring risks a duplicate, never a loss),
 * and forget a qmgr process's requests. */
static void
master_deliveries_child_gone(struct master_child *c)
{
	struct master_delivery *d, *next;

	for (d = master.deliveries; d != NULL; d = next) {
		next = d->next;
		if (d->from == c)
			d->from = NULL;
		if (d->mail == c) {
			master_delivery_answer(d, LOFTD_DELIVER_TEMP, "4.3.0",
			    "mail process ended during the delivery");
			master_delivery_done(d);
		}
	}
}

static void
master_child_read(void *ctx)
{
	struct master_child *c = ctx;
	const char *error = NULL;
	int ret = 0;

	while (c->chan != NULL &&
	    (ret = ipc_chan_recv(c->chan, &master_in, &error)) == 1) {
		if (c->inbatch != NULL &&
		    master_in.type != LOFTD_DELIVER_BATCH) {
			log_warning("%s process %ld: record %u inside a "
			    "delivery batch", master_role_names[c->role],
			    (long)c->pid, master_in.type);
			ipc_msg_clear(&master_in);
			master_child_close_chan(c);
			break;
		}
		if (c->role == MASTER_ROLE_AUTH)
			master_handle_user(c, &master_in);
		else if (master_in.type == LOFTD_LOGIN &&
		    c->role == MASTER_ROLE_LOGIN)
			master_handle_login(c, &master_in);
		else if (master_in.type == LOFTD_CONN_DONE)
			master_handle_done(c, &master_in);
		else if (master_in.type == LOFTD_QUEUED &&
		    c->role == MASTER_ROLE_SMTPD)
			master_relay_queued(c, &master_in);
		else if (master_in.type == LOFTD_DELIVER &&
		    (c->role == MASTER_ROLE_QMGR ||
		    c->role == MASTER_ROLE_LMTP))
			master_handle_deliver(c, &master_in);
		else if (master_in.type == LOFTD_DELIVER_BATCH &&
		    c->role == MASTER_ROLE_QMGR)
			master_handle_deliver_batch(c, &master_in);
		else if (master_in.type == LOFTD_DELIVER_LOCAL &&
		    c->role == MASTER_ROLE_QMGR)
			master_handle_deliver_local(c, &master_in);
		else if (master_in.type == LOFTD_LMTP_RCPT &&
		    (c->role == MASTER_ROLE_LMTP ||
		    c->role == MASTER_ROLE_SMTPD))
			master_handle_lmtp_rcpt(c, &master_in);
		else if (master_in.type == LOFTD_DELIVER_RESULT &&
		    c->role == MASTER_ROLE_MAIL)
			master_handle_deliver_result(c, &master_in);
		else
			log_warning("%s process %ld: unexpected record %u",
			    master_role_names[c->role], (long)c->pid,
			    master_in.type);
		ipc_msg_clear(&master_in);
	}
	if (c->chan != NULL && ret < 0) {
		if (!ipc_chan_closed(c->chan))
			log_warning("%s process %ld: %s",
			    master_role_names[c->role], (long)c->pid, error);
		master_child_close_chan(c);
	}
}

/*
 * Reaping.
 */

static void
master_child_gone(struct master_child *c, int status)
{
	bool current = c->role != MASTER_ROLE_MAIL &&
	    c->role != MASTER_ROLE_QMGR && c->role != MASTER_ROLE_LMTP &&
	    !c->retired && c->gen == master.gen;
	bool qmgr = c->role == MASTER_ROLE_QMGR;
	bool lmtp = c->role == MASTER_ROLE_LMTP;
	bool failed = !c->retired || WIFSIGNALED(status) ||
	    WEXITSTATUS(status) != 0;

	if (WIFSIGNALED(status))
		log_error("%s process %ld killed by signal %d",
		    master_role_names[c->role], (long)c->pid,
		    WTERMSIG(status));
	else if (WEXITSTATUS(status) != 0)
		log_error("%s process %ld exited with status %d",
		    master_role_names[c->role], (long)c->pid,
		    WEXITSTATUS(status));
	master_child_close_chan(c);
	master_deliveries_child_gone(c);
	localcmd_asker_gone(c);
	for (size_t i = 0; i < master.nslots && c->conns > 0; i++) {
		struct master_slot *s = &master.slots[i];

		if (s->id != 0 && (s->login == c || s->mail == c)) {
			if (s->login == c && s->redeeming)
				master_login_fail(s);
			master_slot_drop(s, c);
		}
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		master.children = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (c->role == MASTER_ROLE_LOGIN || c->role == MASTER_ROLE_SMTPD) {
		struct master_child *auth = master_gen_auth(c->gen);

		if (auth != NULL && auth->retired &&
		    master_gen_logins(c->gen) == 0)
			master_child_close_chan(auth);
	}
	free(c);
	if (current)
		master_gen_failed();
	if (qmgr)
		master_qmgr_later(failed);
	if (lmtp)
		master_lmtp_later(failed);
	if (master.stopping && master.children == NULL)
		ioloop_stop(master.loop);
}

static void
master_sigchld(int signo, void *ctx)
{
	struct master_child *c;
	int status;
	pid_t pid;

	(void)signo;
	(void)ctx;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (c = master.children; c != NULL; c = c->next)
			if (c->pid == pid)
				break;
		if (c != NULL)
			master_child_gone(c, status);
		else
			(void)localcmd_reaped(pid, status);
	}
}

/*
 * Reload and stop.
 */

static void
master_sighup(int signo, void *ctx)
{
	unsigned char *text;
	size_t len;
	const char *error;

	(void)signo;
	(void)ctx;
	if (master.stopping)
		return;
	/* First, so that logrotate's SIGHUP works even when the
	 * configuration has gone bad since the start. */
	logpipe_reopen(conf_str("maillog_file"));
	if (master_read_file(master.conf_path, &text, &len, &error) < 0 ||
	    master_conf_apply(text, len, &error) < 0) {
		log_error("reload refused, still running the previous "
		    "configuration: %s", error);
		return;
	}
	if (master_listeners_update(false, &error) < 0)
		log_error("reload: %s", error);
	log_info("reloaded %s", master.conf_path);
	timeout_remove(&master.respawn_to);
	master.respawn_ms = 0;
	master_gen_start();
	master_qmgr_reload();
	master_lmtp_reload();
}

static void
master_kill_all(int sig)
{
	for (struct master_child *c = master.children; c != NULL; c = c->next)
		if (c->pid != 0)
			kill(c->pid, sig);
}

static void
master_kill_timeout(void *ctx)
{
	(void)ctx;
	timeout_remove(&master.kill_to);
	master_kill_all(SIGKILL);
}

static void
master_stop_timeout(void *ctx)
{
	(void)ctx;
	timeout_remove(&master.stop_to);
	log_info("shutdown_timeout reached: ending the remaining sessions");
	master_kill_all(SIGTERM);
	master.kill_to = timeout_add(master.loop, MASTER_KILL_GRACE_MS, false,
	    master_kill_timeout, NULL);
}

static void
master_sigterm(int signo, void *ctx)
{
	(void)ctx;
	if (master.stopping)
		return;
	log_info("stopping on signal %d", signo);
	master.stopping = true;
	localcmd_stop();
	timeout_remove(&master.respawn_to);
	timeout_remove(&master.qmgr_to);
	timeout_remove(&master.lmtp_to);
	while (master.listeners != NULL) {
		struct master_listener *l = master.listeners;

		master.listeners = l->next;
		master_listener_free(l);
	}
	master_retire(0);
	if (master.used == 0) {
		/* Nothing to wait for: close the auth channels too. */
		for (struct master_child *c = master.children; c != NULL;
		    c = c->next)
			if (c->role == MASTER_ROLE_AUTH)
				master_child_close_chan(c);
	}
	if (master.children == NULL) {
		ioloop_stop(master.loop);
		return;
	}
	master.stop_to = timeout_add(master.loop,
	    (unsigned)conf_time("shutdown_timeout") * 1000, false,
	    master_stop_timeout, NULL);
}

/*
 * Start.
 */

static void
master_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
master_free(void)
{
	while (master.listeners != NULL) {
		struct master_listener *l = master.listeners;

		master.listeners = l->next;
		master_listener_free(l);
	}
	while (master.children != NULL) {
		struct master_child *c = master.children;

		master.children = c->next;
		master_child_close_chan(c);
		free(c);
	}
	for (size_t i = 0; i < master.nslots; i++) {
		if (master.slots[i].fd >= 0)
			close(master.slots[i].fd);
		free(master.slots[i].pending);
	}
	free(master.slots);
	while (master.deliveries != NULL) {
		struct master_delivery *d = master.deliveries;

		master.deliveries = d->next;
		free(d);
	}
	localcmd_deinit();
	timeout_remove(&master.qmgr_to);
	timeout_remove(&master.lmtp_to);
	timeout_remove(&master.respawn_to);
	timeout_remove(&master.stop_to);
	timeout_remove(&master.kill_to);
	timeout_remove(&master.mail_idle_to);
	free(master.conf_text);
	free(master.conf_path);
}

/*
 * The mail processes run loftd-mail (loftd.c), from the directory of our
 * own program, where "make" builds it and "make install" puts it: the
 * mail role alone, without OpenSSL and libsasl2, which would cost each
 * mail process (one per mailbox owner) some 500 KiB. Without it, they run
 * the whole of loftd, which says why in the log once.
 */
static void
master_find_mail_exe(void)
{
	char *slash;

	/* self_exe is absolute (/proc/self/exe), so it has a slash. */
	strlcpy(master.mail_exe, master.self_exe, sizeof(master.mail_exe));
	if ((slash = strrchr(master.mail_exe, '/')) != NULL)
		slash[1] = '\0';
	if (strlcat(master.mail_exe, "loftd-mail", sizeof(master.mail_exe)) >=
	    sizeof(master.mail_exe))
		errno = ENAMETOOLONG;
	else if (access(master.mail_exe, X_OK) == 0)
		return;
	log_warning("%s: %s; mail processes run the whole of %s, about "
	    "500 KiB more memory each", master.mail_exe, strerror(errno),
	    master.self_exe);
	master.mail_exe[0] = '\0';
}

int
master_main(const char *conf_path, bool foreground)
{
	unsigned char *text;
	const char *error;
	size_t len;
	ssize_t n;
	char *abs;

	master.foreground = foreground;
	master.root = geteuid() == 0;
	n = readlink("/proc/self/exe", master.self_exe,
	    sizeof(master.self_exe) - 1);
	if (n <= 0 || (size_t)n >= sizeof(master.self_exe) - 1)
		log_fatal("cannot find my own program: /proc/self/exe");
	master.self_exe[n] = '\0';
	if ((abs = realpath(conf_path, NULL)) == NULL)
		log_fatal("%s: %s", conf_path, strerror(errno));
	master.conf_path = abs;
	if (master_read_file(abs, &text, &len, &error) < 0 ||
	    master_conf_apply(text, len, &error) < 0)
		log_fatal("%s", error);
	if (!foreground && conf_str("maillog_file")[0] != '\0') {
		char ident[64];

		snprintf(ident, sizeof(ident), "%s/master",
		    conf_str("syslog_name"));
		if (logpipe_open(conf_str("maillog_file"), &error) < 0)
			log_fatal("%s", error);
		log_open(ident, LOG_DEST_FILE);
	} else
		loftd_log_setup("master", foreground, false);
	if (master_listeners_update(true, &error) < 0)
		log_fatal("%s", error);
	if (master.listeners == NULL)
		log_warning("no listener configured (pop3_listen, "
		    "pop3s_listen, imap_listen, imaps_listen, smtp_listen, "
		    "submission_listen, submissions_listen, lmtp_listen): "
		    "serving nothing");
	if (!master.root)
		log_warning("not started as root: every process runs as uid "
		    "%lu, without chroot", (unsigned long)geteuid());
	master_find_mail_exe();
	if (!foreground && daemon(0, 0) < 0)
		log_fatal("daemon: %s", strerror(errno));
	master_raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	master.loop = ioloop_new();
	logpipe_watch(master.loop);
	localcmd_init(master.loop, master_localcmd_answer);
	if (ioloop_signal_add(master.loop, SIGCHLD, master_sigchld, NULL) < 0 ||
	    ioloop_signal_add(master.loop, SIGHUP, master_sighup, NULL) < 0 ||
	    ioloop_signal_add(master.loop, SIGTERM, master_sigterm, NULL) < 0 ||
	    ioloop_signal_add(master.loop, SIGINT, master_sigterm, NULL) < 0 ||
	    ioloop_signal_add(master.loop, SIGUSR1, master_sigusr1, NULL) < 0)
		log_fatal("signals: %s", strerror(errno));
	log_info("starting (pid %ld, configuration %s)", (long)getpid(),
	    master.conf_path);
	master_gen_start();
	master_qmgr_start();
	master_lmtp_start();
	master.mail_idle_to = timeout_add(master.loop, MASTER_MAIL_CHECK_MS,
	    true, master_mail_idle_check, NULL);
	ioloop_run(master.loop);
	logpipe_close();
	log_info("stopped");
	master_free();
	ioloop_free(&master.loop);
	conf_reset();
	return 0;
}
