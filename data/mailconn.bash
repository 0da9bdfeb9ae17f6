# bash completion for mailconn(1): commands, options and server names.
# Installed as "mailconn" in bash-completion's completionsdir. Server names
# come from `mailconn servers --names`, which reads the config alone (no
# token store, no plugins, no network), so a TAB never waits. Works with or
# without the bash-completion package (it uses no helper of it).

_mailconn_commands="plugins servers check set-default auth send test sendmail queue store"
_mailconn_global_opts="--config --plugin-dir --verbose --help --version -v"
_mailconn_opts_plugins=""
_mailconn_opts_servers="--names"
_mailconn_opts_check="--secrets"
_mailconn_opts_set_default=""
_mailconn_opts_auth="--server --browser --port --paste --device --refresh-token-file --revoke"
_mailconn_opts_send="--server --from --to --cc --bcc --subject --body --body-file --html-file
                     --attach --queue --dsn-notify --dsn-ret --envid --jobs -t"
_mailconn_opts_test="--server --to"
_mailconn_opts_sendmail="-t -i -oi -f -F -B -bm -v"
_mailconn_opts_store="--from --to"

# Server names of the config in use: the one named on the line, else the
# usual search ($MAILCONN_CONFIG, XDG, /etc).
_mailconn_servers()
{
    local prog=$1 config=$2
    if [[ -n $config ]]; then
        "$prog" --config "$config" servers --names 2>/dev/null
    else
        "$prog" servers --names 2>/dev/null
    fi
}

# Words of a list (commands, options, server names: no blanks, no globs).
_mailconn_reply()
{
    COMPREPLY=($(compgen -W "$1" -- "$2"))
}

_mailconn_files()
{
    local IFS=$'\n'
    COMPREPLY=($(compgen "${2:--f}" -- "$1"))
    type compopt >/dev/null 2>&1 && compopt -o filenames 2>/dev/null
}

_mailconn()
{
    local prog=${COMP_WORDS[0]} cur=${COMP_WORDS[COMP_CWORD]} prev=
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    [[ $prev == "=" && COMP_CWORD -gt 1 ]] && prev=${COMP_WORDS[COMP_CWORD - 2]}
    [[ $cur == "=" ]] && cur=

    # the command, and a --config given before it
    local i w cmd= cmdi=0 config=
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
        --config | -c | --plugin-dir | -p)
            ((i + 1 < COMP_CWORD)) && [[ ${COMP_WORDS[i + 1]} == "=" ]] && ((i++))
            ((i++))
            if [[ $w == --config || $w == -c ]] && ((i < COMP_CWORD)); then
                config=${COMP_WORDS[i]}
                config=${config/#\~/$HOME}
            fi
            ;;
        -*) ;;
        *)
            cmd=$w
            cmdi=$i
            break
            ;;
        esac
    done

    # values of options
    if [[ $cmd == store && ($prev == --from || $prev == --to) ]]; then
        _mailconn_reply "file postgresql" "$cur"
        return 0
    fi
    case $prev in
    --config | -c | --body-file | --html-file | --attach | --refresh-token-file)
        _mailconn_files "$cur"
        return 0
        ;;
    --plugin-dir | -p)
        _mailconn_files "$cur" -d
        return 0
        ;;
    --server)
        _mailconn_reply "$(_mailconn_servers "$prog" "$config")" "$cur"
        return 0
        ;;
    --port | --jobs | --from | --to | --cc | --bcc | --subject | --body | --envid | -f | -F | -B)
        COMPREPLY=()
        return 0
        ;;
    --dsn-notify)
        _mailconn_reply "never success failure delay success,failure failure,delay \
                         success,failure,delay" "$cur"
        return 0
        ;;
    --dsn-ret)
        _mailconn_reply "full hdrs" "$cur"
        COMPREPLY=()
        return 0
        ;;
    esac

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            _mailconn_reply "$_mailconn_global_opts" "$cur"
        else
            _mailconn_reply "$_mailconn_commands" "$cur"
        fi
        return 0
    fi

    local optvar=_mailconn_opts_${cmd//-/_}
    case $cmd in
    set-default)
        if [[ $cur != -* ]] && ((COMP_CWORD == cmdi + 1)); then
            _mailconn_reply "$(_mailconn_servers "$prog" "$config")" "$cur"
        else
            COMPREPLY=()
        fi
        ;;
    send)
        local t=
        for ((i = cmdi + 1; i < COMP_CWORD; i++)); do
            [[ ${COMP_WORDS[i]} == -t ]] && t=1
        done
        if [[ $cur != -* && -n $t ]]; then
            _mailconn_files "$cur"   # the messages of send -t
        else
            _mailconn_reply "${!optvar}" "$cur"
        fi
        ;;
    store)
        if ((COMP_CWORD == cmdi + 1)); then
            _mailconn_reply "copy" "$cur"
        else
            _mailconn_reply "${!optvar}" "$cur"
        fi
        ;;
    queue)
        if ((COMP_CWORD == cmdi + 1)); then
            _mailconn_reply "list run flush drop hold release" "$cur"
        else
            COMPREPLY=()
        fi
        ;;
    plugins | servers | check | auth | test | sendmail)
        if [[ $cur == -* || -z $cur ]]; then
            _mailconn_reply "${!optvar}" "$cur"
        else
            COMPREPLY=()
        fi
        ;;
    *)
        COMPREPLY=()
        ;;
    esac
    return 0
}

complete -F _mailconn mailconn
