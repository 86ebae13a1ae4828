/* The command sink: notify.command runs through /bin/sh -c in its own session with the event in
 * PGVIGIL_* environment variables; exit status 0 is success. One attempt per call. */
#include "common/common.h"
#include "common/proc.h"
#include "notify/notify_int.h"

/* The last non-empty line of a program's output, cut to max bytes, for the failure reason. */
static void last_line(const char *out, char *dst, size_t dstsz, size_t max)
{
    dst[0] = '\0';
    if (!out)
        return;
    size_t end = strlen(out);
    while (end > 0 && (out[end - 1] == '\n' || out[end - 1] == '\r' || out[end - 1] == ' '))
        end--;
    size_t start = end;
    while (start > 0 && out[start - 1] != '\n')
        start--;
    size_t len = end - start;
    if (len > max)
        len = max;
    if (len + 1 > dstsz)
        len = dstsz - 1;
    memcpy(dst, out + start, len);
    dst[len] = '\0';
}

bool notify_command_attempt(const NotifySink *s, const NotifyEvent *ev, int timeout_ms, char *why,
                            size_t whysz)
{
    char *env[] = {
        str_printf("PGVIGIL_EVENT=%s", ev->event),
        str_printf("PGVIGIL_CLUSTER=%s", s->scope),
        str_printf("PGVIGIL_NODE=%s", s->node),
        str_printf("PGVIGIL_MEMBER=%s", ev->member ? ev->member : ""),
        str_printf("PGVIGIL_MESSAGE=%s", ev->message),
        str_printf("PGVIGIL_JSON=%s", ev->body),
        NULL,
    };
    const char *argv[] = {"/bin/sh", "-c", s->command, NULL};
    /* new_session: on timeout proc_run() signals the whole process group, so a pipeline or a
     * background child of the hook dies with it.
     * XXX: proc_run() gives SIGTERM 2 s before SIGKILL, so a hook that ignores SIGTERM holds the
     * delivery thread (and notifier_free) up to 2 s past the timeout. */
    ProcOpts opts = {
        .timeout_ms = timeout_ms,
        .env = (const char *const *)env,
        .new_session = true,
    };
    char *output = NULL;
    Err err = {.msg = ""};
    int rc = proc_run(argv, &opts, &output, &err);
    if (rc != 0) {
        /* proc_run's message starts with argv[0]: say "command" rather than "/bin/sh" */
        const char *msg = err.msg;
        if (strncmp(msg, "/bin/sh ", 8) == 0)
            msg += 8;
        char tail[256];
        last_line(output, tail, sizeof(tail), 200);
        str_fmt(why, whysz, "%s%s%s", msg[0] ? msg : "failed", tail[0] ? ": " : "", tail);
    }
    free(output);
    for (size_t i = 0; env[i]; i++)
        free(env[i]);
    return rc == 0;
}
