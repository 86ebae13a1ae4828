/* The established TCP connections to a local port (see tcp_peers.h). */
#include "common/common.h"
#include "ha/tcp_peers.h"

#include <stdio.h>
#include <stdlib.h>

/* "ADDR:PORT" in hex, the address 8 (IPv4) or 32 (IPv6) digits: the port */
static bool hex_port(const char *field, size_t len, int *port)
{
    const char *colon = memchr(field, ':', len);
    if (!colon || (colon - field != 8 && colon - field != 32))
        return false;
    char buf[8];
    size_t n = len - (size_t)(colon + 1 - field);
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, colon + 1, n);
    buf[n] = '\0';
    char *end;
    long v = strtol(buf, &end, 16);
    if (*end || v < 0 || v > 65535)
        return false;
    *port = (int)v;
    return true;
}

bool tcp_line_established_on(const char *line, int port, int *remote_port)
{
    /* sl: local rem st ... */
    const char *f[4];
    size_t l[4];
    const char *p = line;
    for (int i = 0; i < 4; i++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return false;
        f[i] = p;
        while (*p && *p != ' ')
            p++;
        l[i] = (size_t)(p - f[i]);
    }
    int lport, rport;
    if (l[3] != 2 || strncmp(f[3], "01", 2) != 0 || !hex_port(f[1], l[1], &lport) || lport != port ||
        !hex_port(f[2], l[2], &rport))
        return false;
    *remote_port = rport;
    return true;
}

int tcp_peers_on_port(int port, int *remote_ports, int max)
{
    static const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    int n = 0, read_any = 0;
    for (size_t i = 0; i < ARRAY_LEN(files); i++) {
        FILE *f = fopen(files[i], "r");
        if (!f)
            continue;
        read_any = 1;
        char line[512];
        while (fgets(line, sizeof(line), f)) {
            int rport;
            if (n < max && tcp_line_established_on(line, port, &rport))
                remote_ports[n++] = rport;
        }
        fclose(f);
    }
    return read_any ? n : -1;
}
