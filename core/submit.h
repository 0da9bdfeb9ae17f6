/* submit: the drop file the setgid helper (submit/mailconn-submit.c) writes
 * and the root runner (core/drop.c) reads. Shared by both, nothing else:
 * the helper links no part of the core.
 *
 * <spooldir>/drop/d.<16 hex>, owned by the submitting user:
 *   mailconn-drop 1\n
 *   uid N\n            (must equal the file's owner)
 *   [user NAME\n]      (advisory: the runner looks the owner up itself)
 *   [from ADDR\n]      ("<>": the null sender)
 *   [fullname NAME\n] [notify V\n] [ret V\n] [envid V\n] [flag t\n]
 *   (rcpt ADDR\n)*
 *   \n
 *   the message, as sendmail got it
 * Temp files are t.<16 hex>, never read. */
#ifndef MC_CORE_SUBMIT_H
#define MC_CORE_SUBMIT_H

#define MC_SUBMIT_DROP       "drop"
#define MC_SUBMIT_GROUP      "mailconn-submit"
#define MC_SUBMIT_MAGIC      "mailconn-drop"
#define MC_SUBMIT_MAX_RCPTS  1000
#define MC_SUBMIT_MAX_VALUE  998                    /* RFC 5322's line limit */
#define MC_SUBMIT_MAX_SIZE   (64u * 1024 * 1024)    /* the message's bytes */
#define MC_SUBMIT_NAME_LEN   18                     /* "d." and 16 hex digits */

#endif
