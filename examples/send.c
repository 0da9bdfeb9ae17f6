/* A small program that sends one message with libmailconn.
 *
 *   cc send.c $(pkg-config --cflags --libs mailconn) -o send
 *   ./send [--config FILE] [--server NAME] TO SUBJECT TEXT
 *
 * Exit codes follow mailconn's (DESIGN.md): 0 sent, 64 usage, ...
 */
#include <stdio.h>
#include <string.h>

#include <mailconn/mailconn.h>

int main(int argc, char **argv)
{
    mc_context_options opts = MC_CONTEXT_OPTIONS_INIT;
    const char *server = NULL;
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--config") == 0)
            opts.config_path = argv[i + 1];
        else if (strcmp(argv[i], "--server") == 0)
            server = argv[i + 1];
        else
            break;
    }
    if (argc - i != 3) {
        fprintf(stderr, "usage: %s [--config FILE] [--server NAME] TO SUBJECT TEXT\n", argv[0]);
        return 64;
    }
    opts.flags = MC_CONTEXT_ONE_SERVER;
    opts.server = server;

    mc_context *ctx = NULL;
    mc_message *msg = NULL;
    mc_err *err = NULL;
    int rc = mc_context_new(&ctx, &opts, &err);
    if (rc == 0)
        rc = mc_message_new(&msg, &err);
    if (rc == 0)
        rc = mc_message_add_recipient(msg, MC_RCPT_TO, argv[i], &err);
    if (rc == 0)
        rc = mc_message_set_subject(msg, argv[i + 1], &err);
    if (rc == 0)
        rc = mc_message_set_text(msg, argv[i + 2], strlen(argv[i + 2]), &err);
    if (rc == 0)
        rc = mc_send(ctx, server, msg, &err);

    int status = 0;
    if (rc == 0) {
        printf("sent: %s\n", mc_message_last_reply(msg));
    } else {
        fprintf(stderr, "send: %s: %s\n", err ? mc_stage_name(err->stage) : "?",
                err && err->message ? err->message : mc_strerror(rc));
        status = err ? mc_outcome_exit_code(err->outcome) : 70;
    }
    mc_error_free(err);
    mc_message_free(msg);
    mc_context_free(ctx);
    return status;
}
