/* mailconn store copy --from STORE --to STORE (DESIGN.md "Token stores and
 * fleets"): move the stored OAuth records between the built-in file store
 * and the config's token store (`--from file --to postgresql` migrates a
 * machine to the fleet's store). One line per server and a total; the exit
 * code is the most serious outcome (64 bad usage, 78 a store refused, 75 a
 * store down). Only mc_token_store_copy. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct copy_run {
    cli   *c;
    size_t copied, skipped, failed;
} copy_run;

static void on_server(const char *server, int rc, const mc_err *err, void *payload)
{
    copy_run *r = payload;
    if (rc == 0) {
        cli_print_line(stdout, "copied %s", server);
        r->copied++;
    } else if (rc == 1) {
        cli_print_line(stdout, "skipped %s: nothing stored", server);
        r->skipped++;
    } else {
        cli_print_line(stdout, "failed %s", server);
        cli_report(r->c, server, err, rc);
        r->failed++;
    }
}

int cmd_store(cli *c, int argc, char **argv)
{
    static const char usage[] = "usage: mailconn store copy --from file|STORE --to STORE|file";
    if (argc < 2 || strcmp(argv[1], "copy") != 0)
        return cli_usage(c, "%s", usage);
    static const struct option opts[] = {
        { "from", required_argument, NULL, 'f' },
        { "to", required_argument, NULL, 't' },
        { NULL, 0, NULL, 0 },
    };
    const char *from = NULL, *to = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'f': from = optarg; break;
        case 't': to = optarg; break;
        default: return cli_usage(c, "%s", usage);
        }
    }
    if (optind < argc - 1)
        return cli_usage(c, "store copy: unexpected argument \"%s\"", argv[1 + optind]);
    if (!from || !to)
        return cli_usage(c, "store copy needs --from and --to (%s)", usage + 7);
    if (strcmp(from, to) == 0)
        return cli_usage(c, "store copy: --from and --to are the same store (%s)", from);
    mc_context *ctx = cli_context(c, 0, NULL);
    if (!ctx)
        return cli_exit(c);
    copy_run r = { c, 0, 0, 0 };
    mc_err *err = NULL;
    int rc = mc_token_store_copy(ctx, from, to, on_server, &r, &err);
    if (rc < 0 && !r.failed) {
        /* nothing tried: bad stores, or one that cannot open */
        if (err && err->outcome == MC_OUTCOME_USAGE)
            cli_usage(c, "store copy: %s", err->message ? err->message : mc_strerror(rc));
        else
            cli_report(c, "store copy", err, rc);
    } else {
        printf("%zu copied, %zu with nothing stored, %zu failed (%s -> %s)\n", r.copied,
               r.skipped, r.failed, from, to);
    }
    mc_error_free(err);
    mc_context_free(ctx);
    return cli_exit(c);
}
