/*-------------------------------------------------------------------------
 *
 * pgvigil_archive.c
 *		Archive module (archive_library) that hands each WAL file to the
 *		pgvigil agent of this server and reports it archived only once the
 *		agent has stored it in the repository, hashed and durable.
 *
 * Why a module and not archive_command: no shell and no program started
 * per segment, and one connection kept open to the agent, which pushes
 * the files PostgreSQL has marked ready in parallel, ahead of the
 * archiver's requests (it reads pg_wal/archive_status), so that under a
 * write-heavy load the archiver's request usually finds its file stored
 * already.  The agent does the I/O (compression, hashing, a local or
 * object-store repository): nothing here links libcurl or starts threads.
 *
 * Protocol on the agent's Unix socket (pgvigil_archive.socket), one line
 * each way:  "ARCHIVE <file name> <absolute path>\n" -> "OK\n" or
 * "ERR <message>\n".  A failure makes the archiver retry later, and
 * PostgreSQL keeps the WAL file until it succeeds.
 *
 * Copyright (c) pgvigil authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/pgarch.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PG_MODULE_MAGIC;

void		_PG_init(void);
void		_PG_archive_module_init(ArchiveModuleCallbacks *cb);

static char *archive_socket = NULL;	/* pgvigil_archive.socket */
static int	archive_timeout = 120;	/* pgvigil_archive.timeout, seconds */

static pgsocket agent_sock = PGINVALID_SOCKET;

static void
agent_disconnect(void)
{
	if (agent_sock != PGINVALID_SOCKET)
		close(agent_sock);
	agent_sock = PGINVALID_SOCKET;
}

static bool
agent_connect(void)
{
	struct sockaddr_un addr;

	if (agent_sock != PGINVALID_SOCKET)
		return true;
	if (strlen(archive_socket) >= sizeof(addr.sun_path))
	{
		ereport(WARNING, (errmsg("pgvigil_archive: socket path \"%s\" is too long", archive_socket)));
		return false;
	}
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strlcpy(addr.sun_path, archive_socket, sizeof(addr.sun_path));
	agent_sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (agent_sock == PGINVALID_SOCKET)
	{
		ereport(WARNING, (errmsg("pgvigil_archive: cannot create a socket: %m")));
		return false;
	}
	if (connect(agent_sock, (struct sockaddr *) &addr, sizeof(addr)) != 0)
	{
		ereport(WARNING,
				(errmsg("pgvigil_archive: cannot reach the pgvigil agent at \"%s\": %m", archive_socket),
				 errhint("WAL files stay in pg_wal until the agent runs and archives them.")));
		agent_disconnect();
		return false;
	}
	return true;
}

/* Send all of buf; false (and disconnected) on error. */
static bool
agent_send(const char *buf, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = send(agent_sock, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			ereport(WARNING, (errmsg("pgvigil_archive: lost the connection to the agent at \"%s\": %m", archive_socket)));
			agent_disconnect();
			return false;
		}
		buf += n;
		len -= n;
	}
	return true;
}

/* Read one reply line into buf; false (and disconnected) on error or timeout. */
static bool
agent_reply(char *buf, size_t size)
{
	size_t		got = 0;
	TimestampTz start = GetCurrentTimestamp();

	for (;;)
	{
		ssize_t		n;
		long		left_ms;

		n = recv(agent_sock, buf + got, size - 1 - got, MSG_DONTWAIT);
		if (n > 0)
		{
			char	   *nl;

			got += n;
			buf[got] = '\0';
			nl = strchr(buf, '\n');
			if (nl != NULL)
			{
				*nl = '\0';
				return true;
			}
			if (got >= size - 1)
			{
				ereport(WARNING, (errmsg("pgvigil_archive: the agent's reply is too long")));
				agent_disconnect();
				return false;
			}
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		{
			if (n == 0)
				ereport(WARNING, (errmsg("pgvigil_archive: the agent at \"%s\" closed the connection", archive_socket)));
			else
				ereport(WARNING, (errmsg("pgvigil_archive: receiving from the agent at \"%s\": %m", archive_socket)));
			agent_disconnect();
			return false;
		}
		left_ms = (long) archive_timeout * 1000L -
			(long) ((GetCurrentTimestamp() - start) / 1000);
		if (left_ms <= 0)
		{
			ereport(WARNING, (errmsg("pgvigil_archive: the agent did not answer within %d s", archive_timeout)));
			agent_disconnect();
			return false;
		}
		/*
		 * Not woken by the latch, which must not be reset here: it is the
		 * archiver's main loop's, set by SIGUSR2 (shutdown: one last cycle,
		 * then exit) and when a file is ready. Reset here, that wakeup was
		 * lost and the archiver slept its full 60 s wait before exiting,
		 * holding up the primary's clean shutdown, so a switchover failed:
		 * the shutdown switches to a new segment, so a request is usually in
		 * flight when SIGUSR2 comes. Left set, the main loop sees it.
		 */
		(void) WaitLatchOrSocket(MyLatch, WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 agent_sock, Min(left_ms, 1000L), PG_WAIT_EXTENSION);
	}
}

static bool
pgvigil_archive_configured(void)
{
	return archive_socket != NULL && archive_socket[0] != '\0';
}

static bool
pgvigil_archive_file(const char *file, const char *path)
{
	char		request[MAXPGPATH * 2 + 64];
	char		reply[1024];
	int			len;

	if (path[0] == '/')
		len = snprintf(request, sizeof(request), "ARCHIVE %s %s\n", file, path);
	else
		len = snprintf(request, sizeof(request), "ARCHIVE %s %s/%s\n", file, DataDir, path);
	if (len < 0 || len >= (int) sizeof(request))
	{
		ereport(WARNING, (errmsg("pgvigil_archive: path of \"%s\" is too long", file)));
		return false;
	}
	/* one reconnection: the agent may have restarted since the last file */
	for (int attempt = 0; attempt < 2; attempt++)
	{
		if (!agent_connect())
			return false;
		if (agent_send(request, len))
			break;
		if (attempt == 1)
			return false;
	}
	if (!agent_reply(reply, sizeof(reply)))
		return false;
	if (strcmp(reply, "OK") == 0)
		return true;
	ereport(WARNING,
			(errmsg("pgvigil_archive: could not archive \"%s\": %s", file,
					strncmp(reply, "ERR ", 4) == 0 ? reply + 4 : reply)));
	return false;
}

static void
pgvigil_archive_shutdown(void)
{
	agent_disconnect();
}

void
_PG_init(void)
{
	DefineCustomStringVariable("pgvigil_archive.socket",
							   "Unix socket of the pgvigil agent that archives this server's WAL.",
							   "Set by the agent.",
							   &archive_socket,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("pgvigil_archive.timeout",
							"Seconds to wait for the agent to store one WAL file.",
							NULL,
							&archive_timeout,
							120, 1, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("pgvigil_archive");
}

void
_PG_archive_module_init(ArchiveModuleCallbacks *cb)
{
	cb->check_configured_cb = pgvigil_archive_configured;
	cb->archive_file_cb = pgvigil_archive_file;
	cb->shutdown_cb = pgvigil_archive_shutdown;
}
