/* Floating IP: adds and removes one IPv4 address on an interface with rtnetlink requests (one
 * short-lived NETLINK_ROUTE socket per call), and announces it with gratuitous ARP. */
#include "common/common.h"
#include "net/vip.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define NL_TIMEOUT_MS 2000
#define NL_BUFSZ 32768

struct Vip {
    struct in_addr addr;
    int prefix;
    char ifname[IF_NAMESIZE];
    int arp_count;
    char desc[64];
};

/* ---- configuration ---------------------------------------------------------------------- */

static bool parse_address(const char *text, struct in_addr *addr, int *prefix, Err *err)
{
    if (str_empty(text)) {
        err_set(err, "vip.address: required");
        return false;
    }
    const char *slash = strchr(text, '/');
    size_t alen = slash ? (size_t)(slash - text) : strlen(text);
    char host[INET_ADDRSTRLEN];
    if (alen == 0 || alen >= sizeof(host)) {
        err_set(err, "vip.address: invalid IPv4 address \"%s\"", text);
        return false;
    }
    memcpy(host, text, alen);
    host[alen] = '\0';
    if (inet_pton(AF_INET, host, addr) != 1) {
        err_set(err, "vip.address: invalid IPv4 address \"%s\"", host);
        return false;
    }
    *prefix = 32;
    if (slash) {
        const char *p = slash + 1;
        size_t n = strlen(p);
        bool digits = n >= 1 && n <= 2;
        for (size_t i = 0; digits && i < n; i++)
            digits = p[i] >= '0' && p[i] <= '9';
        int v = digits ? atoi(p) : -1;
        if (v < 1 || v > 32) {
            err_set(err, "vip.address: invalid prefix length \"%s\" in \"%s\" (expected 1 to 32)", p, text);
            return false;
        }
        *prefix = v;
    }
    uint32_t a = ntohl(addr->s_addr);
    if (a == 0 || (a >> 24) == 127 || (a >> 28) == 14 || (a >> 28) == 15) {
        err_set(err, "vip.address: \"%s\" is not a unicast address", host);
        return false;
    }
    return true;
}

/* the kernel's dev_valid_name() rules */
static bool valid_ifname(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= IF_NAMESIZE || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/' || s[i] == ':' || s[i] == ' ' || s[i] == '\t' || s[i] == '\n')
            return false;
    return true;
}

Vip *vip_new(const VipConfig *cfg, Err *err)
{
    struct in_addr addr;
    int prefix;
    if (!parse_address(cfg->address, &addr, &prefix, err))
        return NULL;
    if (str_empty(cfg->interface)) {
        err_set(err, "vip.interface: required when vip.address is set");
        return NULL;
    }
    if (!valid_ifname(cfg->interface)) {
        err_set(err, "vip.interface: invalid interface name \"%s\"", cfg->interface);
        return NULL;
    }
    if (cfg->arp_count < 0) {
        err_set(err, "vip.arp_count: must not be negative");
        return NULL;
    }
    Vip *v = xcalloc(1, sizeof(*v));
    v->addr = addr;
    v->prefix = prefix;
    str_copy(v->ifname, sizeof(v->ifname), cfg->interface);
    v->arp_count = cfg->arp_count;
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr, host, sizeof(host));
    str_fmt(v->desc, sizeof(v->desc), "%s/%d on %s", host, prefix, v->ifname);
    return v;
}

const char *vip_describe(const Vip *v)
{
    return v ? v->desc : "(no vip)";
}

void vip_free(Vip *v)
{
    free(v);
}

/* ---- rtnetlink -------------------------------------------------------------------------- */

typedef struct AddrReq {
    struct nlmsghdr nh;
    struct ifaddrmsg ifa;
    char attrs[64];
} AddrReq;

static void req_attr(AddrReq *r, unsigned short type, const void *data, size_t len)
{
    struct rtattr *rta = (struct rtattr *)((char *)&r->nh + NLMSG_ALIGN(r->nh.nlmsg_len));
    rta->rta_type = type;
    rta->rta_len = (unsigned short)RTA_LENGTH(len);
    memcpy(RTA_DATA(rta), data, len);
    r->nh.nlmsg_len = NLMSG_ALIGN(r->nh.nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

static void req_init(AddrReq *r, const Vip *v, int ifindex, unsigned short type, unsigned short flags)
{
    memset(r, 0, sizeof(*r));
    r->nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
    r->nh.nlmsg_type = type;
    r->nh.nlmsg_flags = (unsigned short)(NLM_F_REQUEST | flags);
    r->nh.nlmsg_seq = 1;
    r->ifa.ifa_family = AF_INET;
    r->ifa.ifa_prefixlen = (unsigned char)v->prefix;
    r->ifa.ifa_scope = RT_SCOPE_UNIVERSE;
    r->ifa.ifa_index = (unsigned)ifindex;
    if (type != RTM_GETADDR) {
        req_attr(r, IFA_LOCAL, &v->addr, sizeof(v->addr));
        req_attr(r, IFA_ADDRESS, &v->addr, sizeof(v->addr));
    }
}

static int nl_open(Err *err)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) {
        err_set(err, "netlink socket: %s", strerror(errno));
        return -1;
    }
    struct timeval tv = {.tv_sec = NL_TIMEOUT_MS / 1000, .tv_usec = (NL_TIMEOUT_MS % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_nl local = {.nl_family = AF_NETLINK};
    if (bind(fd, (struct sockaddr *)&local, sizeof(local)) != 0) {
        err_set(err, "netlink bind: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static bool nl_send(int fd, AddrReq *r, Err *err)
{
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    ssize_t n;
    do
        n = sendto(fd, r, r->nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel));
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)r->nh.nlmsg_len) {
        err_set(err, "netlink send: %s", n < 0 ? strerror(errno) : "short write");
        return false;
    }
    return true;
}

/* One datagram from the kernel into buf; its length, or -1 + err. */
static ssize_t nl_recv(int fd, char *buf, size_t sz, Err *err)
{
    ssize_t n;
    do
        n = recv(fd, buf, sz, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        err_set(err, "netlink receive: %s",
                errno == EAGAIN || errno == EWOULDBLOCK ? "no answer from the kernel" : strerror(errno));
        return -1;
    }
    return n;
}

/* Send a request with NLM_F_ACK; *kerr = the kernel's answer (0 or an errno). false + err
 * when no answer could be read. */
static bool nl_transact(AddrReq *r, int *kerr, Err *err)
{
    int fd = nl_open(err);
    if (fd < 0)
        return false;
    r->nh.nlmsg_flags |= NLM_F_ACK;
    bool ok = nl_send(fd, r, err);
    char *buf = ok ? xmalloc(NL_BUFSZ) : NULL;
    bool answered = false;
    while (ok && !answered) {
        ssize_t n = nl_recv(fd, buf, NL_BUFSZ, err);
        if (n < 0) {
            ok = false;
            break;
        }
        size_t left = (size_t)n;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq != r->nh.nlmsg_seq || h->nlmsg_type != NLMSG_ERROR)
                continue;
            if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
                err_set(err, "netlink: truncated answer");
                ok = false;
                break;
            }
            const struct nlmsgerr *e = NLMSG_DATA(h);
            *kerr = -e->error;
            answered = true;
            break;
        }
    }
    free(buf);
    close(fd);
    return ok && answered;
}

/* Whether the kernel lists v's address (same local address and prefix) on ifindex. */
static bool addr_listed(const Vip *v, int ifindex, bool *found, Err *err)
{
    *found = false;
    int fd = nl_open(err);
    if (fd < 0)
        return false;
    AddrReq r;
    req_init(&r, v, ifindex, RTM_GETADDR, NLM_F_DUMP);
    r.ifa.ifa_prefixlen = 0;
    r.ifa.ifa_scope = 0;
    bool ok = nl_send(fd, &r, err);
    char *buf = ok ? xmalloc(NL_BUFSZ) : NULL;
    bool done = false;
    while (ok && !done) {
        ssize_t n = nl_recv(fd, buf, NL_BUFSZ, err);
        if (n < 0) {
            ok = false;
            break;
        }
        size_t left = (size_t)n;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq != r.nh.nlmsg_seq)
                continue;
            if (h->nlmsg_type == NLMSG_DONE) {
                done = true;
                break;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                err_set(err, "netlink address dump: %s", strerror(-e->error));
                ok = false;
                break;
            }
            if (h->nlmsg_type != RTM_NEWADDR || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifaddrmsg)))
                continue;
            const struct ifaddrmsg *ifa = NLMSG_DATA(h);
            if (ifa->ifa_family != AF_INET || (int)ifa->ifa_index != ifindex || ifa->ifa_prefixlen != v->prefix)
                continue;
            const struct in_addr *local = NULL, *address = NULL;
            int alen = (int)IFA_PAYLOAD(h);
            for (struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
                if (RTA_PAYLOAD(a) != sizeof(struct in_addr))
                    continue;
                if (a->rta_type == IFA_LOCAL)
                    local = RTA_DATA(a);
                else if (a->rta_type == IFA_ADDRESS)
                    address = RTA_DATA(a);
            }
            if (!local)
                local = address;
            if (local && local->s_addr == v->addr.s_addr)
                *found = true;
        }
    }
    free(buf);
    close(fd);
    return ok;
}

static int ifindex_of(const Vip *v, Err *err)
{
    unsigned idx = if_nametoindex(v->ifname);
    if (idx == 0) {
        if (errno == ENODEV || errno == ENXIO)
            err_set(err, "vip.interface: no such interface \"%s\"", v->ifname);
        else
            err_set(err, "vip.interface: \"%s\": %s", v->ifname, strerror(errno));
        return 0;
    }
    return (int)idx;
}

/* ---- gratuitous ARP --------------------------------------------------------------------- */

typedef struct __attribute__((packed)) ArpPacket {
    struct arphdr h;
    unsigned char sha[ETH_ALEN];
    unsigned char spa[4];
    unsigned char tha[ETH_ALEN];
    unsigned char tpa[4];
} ArpPacket;

/* Broadcast count ARP requests "who has VIP? tell VIP" from the interface's MAC, back to back
 * (the agent's loop must not wait). Skipped on interfaces without ARP or not up. */
static bool send_garp(const Vip *v, int ifindex, int count, Err *err)
{
    if (count <= 0)
        return true;
    int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err_set(err, "gratuitous ARP on %s: packet socket: %s", v->ifname, strerror(errno));
        return false;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    str_copy(ifr.ifr_name, sizeof(ifr.ifr_name), v->ifname);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) {
        err_set(err, "gratuitous ARP on %s: SIOCGIFFLAGS: %s", v->ifname, strerror(errno));
        close(fd);
        return false;
    }
    if ((ifr.ifr_flags & IFF_NOARP) || !(ifr.ifr_flags & IFF_UP)) {
        log_debug("vip %s: no gratuitous ARP (interface %s)", v->desc, (ifr.ifr_flags & IFF_NOARP) ? "has no ARP" : "is down");
        close(fd);
        return true;
    }
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
        err_set(err, "gratuitous ARP on %s: SIOCGIFHWADDR: %s", v->ifname, strerror(errno));
        close(fd);
        return false;
    }
    if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
        log_debug("vip %s: no gratuitous ARP (hardware type %d is not Ethernet)", v->desc, ifr.ifr_hwaddr.sa_family);
        close(fd);
        return true;
    }
    ArpPacket p;
    memset(&p, 0, sizeof(p));
    p.h.ar_hrd = htons(ARPHRD_ETHER);
    p.h.ar_pro = htons(ETH_P_IP);
    p.h.ar_hln = ETH_ALEN;
    p.h.ar_pln = 4;
    p.h.ar_op = htons(ARPOP_REQUEST);
    memcpy(p.sha, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
    memcpy(p.spa, &v->addr, 4);
    memcpy(p.tpa, &v->addr, 4); /* tha stays zero (RFC 5227 announcement) */
    struct sockaddr_ll to;
    memset(&to, 0, sizeof(to));
    to.sll_family = AF_PACKET;
    to.sll_protocol = htons(ETH_P_ARP);
    to.sll_ifindex = ifindex;
    to.sll_halen = ETH_ALEN;
    memset(to.sll_addr, 0xff, ETH_ALEN);
    bool ok = true;
    for (int i = 0; i < count && ok; i++) {
        ssize_t n = sendto(fd, &p, sizeof(p), 0, (struct sockaddr *)&to, sizeof(to));
        if (n != (ssize_t)sizeof(p)) {
            err_set(err, "gratuitous ARP on %s: send: %s", v->ifname, n < 0 ? strerror(errno) : "short write");
            ok = false;
        }
    }
    close(fd);
    return ok;
}

/* ---- public operations ------------------------------------------------------------------ */

bool vip_add(Vip *v, bool *added, Err *err)
{
    if (added)
        *added = false;
    int idx = ifindex_of(v, err);
    if (idx == 0)
        return false;
    AddrReq r;
    req_init(&r, v, idx, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    int kerr = 0;
    if (!nl_transact(&r, &kerr, err)) {
        err_prefix(err, "adding %s", v->desc);
        return false;
    }
    if (kerr == EEXIST)
        return true;
    if (kerr != 0) {
        err_set(err, "adding %s: %s", v->desc, strerror(kerr));
        return false;
    }
    if (added)
        *added = true;
    /* the address is ours now: an ARP failure only delays neighbours' caches, so it is logged
     * here rather than turned into a failed add that the caller would retry */
    Err aerr = {{0}};
    if (!send_garp(v, idx, v->arp_count, &aerr))
        log_warn("vip %s: %s", v->desc, aerr.msg);
    return true;
}

bool vip_remove(Vip *v, bool *removed, Err *err)
{
    if (removed)
        *removed = false;
    unsigned idx = if_nametoindex(v->ifname);
    if (idx == 0) /* no interface, no address on it */
        return true;
    AddrReq r;
    req_init(&r, v, (int)idx, RTM_DELADDR, 0);
    int kerr = 0;
    if (!nl_transact(&r, &kerr, err)) {
        err_prefix(err, "removing %s", v->desc);
        return false;
    }
    if (kerr == EADDRNOTAVAIL || kerr == ENODEV)
        return true;
    if (kerr != 0) {
        err_set(err, "removing %s: %s", v->desc, strerror(kerr));
        return false;
    }
    if (removed)
        *removed = true;
    return true;
}

bool vip_present(Vip *v)
{
    unsigned idx = if_nametoindex(v->ifname);
    if (idx == 0)
        return false;
    bool found = false;
    Err err;
    return addr_listed(v, (int)idx, &found, &err) && found;
}
