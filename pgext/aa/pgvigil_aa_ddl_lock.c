/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_ddl_lock.c
 *	  The group's DDL lock, the backend's side: an HTTP request to the node's
 *	  pgvigil agent (pgvigil_aa.agent_url, "host:port" of its REST API) before
 *	  the transaction's first replicated DDL statement, and another one when
 *	  the transaction ends, with the commit's end in the WAL: the agent makes
 *	  the next holder, on any node, wait until that node has applied this
 *	  commit, so the group's DDL runs in one order everywhere.
 *
 *	  The requests are plain HTTP/1.0 over a socket (a server process may not
 *	  link an HTTP library), bounded in time; taking the lock can be
 *	  cancelled.  A release that fails is only a warning: the agent releases
 *	  the lock of a backend that is gone, or of itself when it dies (lease).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "common/base64.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "pgvigil_aa_ddl_lock.h"

static char *agent_url = NULL;
static char *agent_auth = NULL;
static int	lock_timeout_ms = 30000;
static bool held = false;
static bool asked = false;		/* a request went out: the agent hears the end either way */

/* Wait for fd to be ready for events, at most until deadline; interruptible
 * when asked.  False on timeout or error. */
static bool
wait_fd(int fd, short events, TimestampTz deadline, bool interruptible)
{
	for (;;)
	{
		struct pollfd p = {.fd = fd,.events = events};
		long		left_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		int			rc;

		if (left_ms <= 0)
			return false;
		if (interruptible)
			CHECK_FOR_INTERRUPTS();
		rc = poll(&p, 1, (int) Min(left_ms, 100));
		if (rc > 0)
			return (p.revents & (events | POLLHUP)) != 0;
		if (rc < 0 && errno != EINTR)
			return false;
	}
}

/*
 * POST path with body to the agent; the HTTP status (0: no answer, with
 * why) and the answer's body into answer.  No palloc (it runs after a commit
 * too); the socket is closed also when the wait is cancelled.
 */
static int
agent_post(const char *path, const char *body, int timeout_ms, bool interruptible, char *answer, size_t answer_sz)
{
	char		host[256];
	const char *hs = agent_url, *he;
	const char *colon = strrchr(agent_url, ':');
	struct addrinfo hints = {0};
	struct addrinfo *volatile res = NULL;
	volatile int fd = -1;
	volatile int status = 0;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	answer[0] = '\0';
	/* host:port, [v6]:port */
	if (agent_url[0] == '[')
	{
		hs = agent_url + 1;
		he = strchr(hs, ']');
		if (he == NULL || he[1] != ':')
			he = NULL;
		colon = he ? he + 1 : NULL;
	}
	else
		he = colon;
	if (colon == NULL || he == NULL || he == hs || (size_t) (he - hs) >= sizeof(host))
	{
		snprintf(answer, answer_sz, "pgvigil_aa.agent_url \"%s\" is not host:port", agent_url);
		return 0;
	}
	memcpy(host, hs, he - hs);
	host[he - hs] = '\0';
	hints.ai_socktype = SOCK_STREAM;
	{
		struct addrinfo *r = NULL;

		if (getaddrinfo(host, colon + 1, &hints, &r) != 0 || r == NULL)
		{
			snprintf(answer, answer_sz, "cannot resolve the agent's address %s", agent_url);
			return 0;
		}
		res = r;
	}
	PG_TRY();
	{
		char		req[2048];
		char		buf[2048];
		size_t		got = 0;
		int			reqlen;
		char		auth[512] = "";

		fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0 || (connect(fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS) ||
			!wait_fd(fd, POLLOUT, deadline, interruptible))
		{
			snprintf(answer, answer_sz, "cannot connect to the agent at %s", agent_url);
			goto done;
		}
		{
			int			err = 0;
			socklen_t	len = sizeof(err);

			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
			{
				snprintf(answer, answer_sz, "cannot connect to the agent at %s: %s", agent_url, strerror(err));
				goto done;
			}
		}
		if (agent_auth && agent_auth[0] && pg_b64_enc_len(strlen(agent_auth)) < (int) sizeof(auth) - 40)
		{
			char		enc[512];
			int			n = pg_b64_encode(agent_auth, strlen(agent_auth), enc, sizeof(enc) - 1);

			enc[Max(n, 0)] = '\0';
			snprintf(auth, sizeof(auth), "Authorization: Basic %s\r\n", enc);
		}
		reqlen = snprintf(req, sizeof(req),
						  "POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
						  path, agent_url, strlen(body), auth, body);
		if (reqlen <= 0 || reqlen >= (int) sizeof(req))
		{
			snprintf(answer, answer_sz, "the request to the agent is too long");
			goto done;
		}
		for (int sent = 0; sent < reqlen;)
		{
			ssize_t		n = send(fd, req + sent, reqlen - sent, MSG_NOSIGNAL);

			if (n > 0)
				sent += n;
			else if (n < 0 && (errno == EAGAIN || errno == EINTR) && wait_fd(fd, POLLOUT, deadline, interruptible))
				continue;
			else
			{
				snprintf(answer, answer_sz, "cannot send to the agent at %s", agent_url);
				goto done;
			}
		}
		/* the answer, until the agent closes (HTTP/1.0) */
		while (got < sizeof(buf) - 1)
		{
			ssize_t		n;

			if (!wait_fd(fd, POLLIN, deadline, interruptible))
			{
				snprintf(answer, answer_sz, "the agent at %s did not answer within %d ms", agent_url, timeout_ms);
				goto done;
			}
			n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
			if (n == 0)
				break;
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				break;
			if (n > 0)
				got += n;
		}
		buf[got] = '\0';
		{
			int			code = 0;
			char	   *b = strstr(buf, "\r\n\r\n");

			if (sscanf(buf, "HTTP/%*d.%*d %d", &code) != 1)
			{
				snprintf(answer, answer_sz, "the agent at %s answered something that is not HTTP", agent_url);
				goto done;
			}
			status = code;
			if (b)
			{
				strlcpy(answer, b + 4, answer_sz);
				answer[strcspn(answer, "\n")] = '\0';
			}
		}
done:
		;
	}
	PG_FINALLY();
	{
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
	}
	PG_END_TRY();
	return status;
}

void
aa_ddl_lock_take(void)
{
	char		body[128];
	char		answer[512];
	int			status;

	if (held || agent_url == NULL || agent_url[0] == '\0')
		return;
	snprintf(body, sizeof(body), "{\"pid\": %d, \"timeout_ms\": %d}", MyProcPid, lock_timeout_ms);
	asked = true;
	/* (the agent answers within timeout_ms; a little more for the way there and back) */
	status = agent_post("/aa/ddl_lock", body, lock_timeout_ms + 5000, true, answer, sizeof(answer));
	if (status != 200)
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("pgvigil_aa: cannot take the group's DDL lock: %s", answer[0] ? answer : "no reason given"),
				 errhint("The agent at pgvigil_aa.agent_url keeps it; DDL waits for the DDL of other nodes (pgvigil_aa.ddl_lock_timeout).")));
	held = true;
}

static void
release_at_end(XactEvent event, void *arg)
{
	char		body[128];
	char		answer[512];
	XLogRecPtr	end;

	if (event == XACT_EVENT_PRE_PREPARE && held)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pgvigil_aa: a transaction with replicated DDL cannot be prepared"),
				 errdetail("Its DDL would reach the other nodes at COMMIT PREPARED, out of the group's DDL order.")));
	if (!asked || (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT && event != XACT_EVENT_PREPARE))
		return;
	held = false;
	asked = false;
	/* an aborted (or prepared) transaction's DDL never reached the stream:
	 * nothing to wait for */
	end = event == XACT_EVENT_COMMIT ? XactLastCommitEnd : InvalidXLogRecPtr;
	snprintf(body, sizeof(body), "{\"pid\": %d, \"lsn\": \"%X/%X\"}", MyProcPid, LSN_FORMAT_ARGS(end));
	if (agent_post("/aa/ddl_unlock", body, 5000, false, answer, sizeof(answer)) != 200)
		ereport(WARNING,
				(errmsg("pgvigil_aa: cannot release the group's DDL lock: %s", answer[0] ? answer : "no reason given"),
				 errdetail("The agent releases it when it finds this backend gone.")));
}

void
aa_ddl_lock_init(void)
{
	DefineCustomStringVariable("pgvigil_aa.agent_url",
							   "The node's pgvigil agent (host:port of its REST API), which keeps the group's DDL lock.",
							   "Empty: replicated DDL takes no lock (run DDL from one node at a time).",
							   &agent_url, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("pgvigil_aa.agent_auth",
							   "user:password of the agent's REST API, when it asks for them.",
							   NULL, &agent_auth, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomIntVariable("pgvigil_aa.ddl_lock_timeout",
							"How long replicated DDL waits for the group's DDL lock.",
							NULL, &lock_timeout_ms, 30000, 100, 3600 * 1000, PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	RegisterXactCallback(release_at_end, NULL);
}
