/* chatnode: the daemon's thin main around the node library. */
#include "node/cn_node.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    cn_node_config_t cfg;
    char err[256];
    cn_node_config_default(&cfg);
    int rc = cn_node_config_parse(&cfg, argc, argv, err, sizeof(err));
    if (rc == CN_EAGAIN)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "chatnode: %s (see --help)\n", err);
        return 64; /* EX_USAGE */
    }
    if (cfg.check_only) {
        rc = cn_node_check_config(&cfg, err, sizeof(err));
        if (rc < 0) {
            fprintf(stderr, "chatnode: configuration error: %s\n", err);
            return 1;
        }
        printf("configuration ok\n");
        return 0;
    }
    cn_node_t *node;
    rc = cn_node_new(&cfg, &node);
    if (rc < 0) {
        fprintf(stderr, "chatnode: cannot start: %s\n", cn_strerror(rc));
        return 1;
    }
    rc = cn_node_run(node);
    cn_node_free(node);
    return rc < 0 ? 1 : 0;
}
