/* Fuzz the YAML configuration readers (node, CLI and proxy files): a broken file must give one
 * error line naming the file, never a crash, a leak or an accepted half-read configuration. */
#include "common/common.h"
#include "config/config.h"
#include "fuzz_util.h"

#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_one(Config *(*load)(const char *, Err *), const char *path)
{
    Err err = {{0}};
    Config *cfg = load(path, &err);
    if (!cfg) {
        FUZZ_CHECK(err.msg[0] != '\0');
        FUZZ_CHECK(strstr(err.msg, path) != NULL);  /* every error names the file */
        FUZZ_CHECK(strchr(err.msg, '\n') == NULL);  /* ... on one line */
        return;
    }
    FUZZ_CHECK(cfg->scope && cfg->scope[0]);
    FUZZ_CHECK(cfg->n_etcd_hosts >= 1);
    FUZZ_CHECK(cfg->namespace_ && cfg->namespace_[strlen(cfg->namespace_) - 1] == '/');
    FUZZ_CHECK(dynconfig_check(&cfg->bootstrap_dcs, &err) == NULL);
    config_free(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("pgvigil-fuzz.yml", 0);
    FUZZ_CHECK(fd >= 0);
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        FUZZ_CHECK(w > 0);
        off += (size_t)w;
    }
    char path[64];
    FUZZ_CHECK(str_fmt(path, sizeof(path), "/proc/self/fd/%d", fd));
    check_one(config_load, path);
    check_one(config_load_client, path);
    check_one(config_load_proxy, path);
    close(fd);
    return 0;
}
