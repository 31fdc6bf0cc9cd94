# Generated from the clap definitions by kit::man; do not edit. Regenerate: LOGD_BLESS=1 cargo test --locked -p logd --bins
# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_logdctl_global_optspecs
    string join \n socket= admin-socket= console-socket= autostart server-uid= h/help V/version
end

function __fish_logdctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_logdctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_logdctl_using_subcommand
    set -l cmd (__fish_logdctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c logdctl -n "__fish_logdctl_needs_command" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_needs_command" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_needs_command" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_needs_command" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_needs_command" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_needs_command" -s V -l version -d 'Print version'
complete -c logdctl -n "__fish_logdctl_needs_command" -f -a "console" -d 'Manage consoles: a guest\'s serial chardev with a log and TCP/UNIX subscribers'
complete -c logdctl -n "__fish_logdctl_needs_command" -f -a "ps" -d 'Every stream of every domain, one row each, subscribers under their console'
complete -c logdctl -n "__fish_logdctl_needs_command" -f -a "log-level" -d 'Change the daemon\'s log filter while it runs'
complete -c logdctl -n "__fish_logdctl_needs_command" -f -a "events" -d 'Stream lifecycle events as they happen, until interrupted'
complete -c logdctl -n "__fish_logdctl_needs_command" -f -a "top" -d 'A live view of every stream, busiest first, refreshed every second; q quits.'
complete -c logdctl -n "__fish_logdctl_needs_command" -f -a "reexec" -d 'Hand everything to a new logd process (as SIGUSR1 does) and report how it went'
complete -c logdctl -n "__fish_logdctl_needs_command" -f -a "stats" -d 'One domain in depth'
complete -c logdctl -n "__fish_logdctl_needs_command" -f -a "attach" -d 'Connect this terminal to a console, as `virsh console` and conserver\'s `console` do'
complete -c logdctl -n "__fish_logdctl_needs_command" -f -a "run" -d 'Run a command with its stdout and stderr going into a capped log'
complete -c logdctl -n "__fish_logdctl_needs_command" -f -a "append" -d 'Append a message (a line) to a log, open or not'
complete -c logdctl -n "__fish_logdctl_needs_command" -f -a "position" -d 'Print the position INODE:OFFSET of the end of a log'
complete -c logdctl -n "__fish_logdctl_needs_command" -f -a "read" -d 'Write a log\'s raw bytes to stdout, oldest first, across rotated files'
complete -c logdctl -n "__fish_logdctl_needs_command" -f -a "tail" -d 'Print the last bytes, or lines, of a log across rotated files'
complete -c logdctl -n "__fish_logdctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and not __fish_seen_subcommand_from add remove kick grant list help" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and not __fish_seen_subcommand_from add remove kick grant list help" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and not __fish_seen_subcommand_from add remove kick grant list help" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and not __fish_seen_subcommand_from add remove kick grant list help" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and not __fish_seen_subcommand_from add remove kick grant list help" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and not __fish_seen_subcommand_from add remove kick grant list help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and not __fish_seen_subcommand_from add remove kick grant list help" -f -a "add" -d 'Add a console: its guest side, its log, and where subscribers connect'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and not __fish_seen_subcommand_from add remove kick grant list help" -f -a "remove" -d 'Remove a console (its log stays)'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and not __fish_seen_subcommand_from add remove kick grant list help" -f -a "kick" -d 'Disconnect a subscriber (its id is in `logdctl ps`)'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and not __fish_seen_subcommand_from add remove kick grant list help" -f -a "grant" -d 'Give the write lock to a subscriber'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and not __fish_seen_subcommand_from add remove kick grant list help" -f -a "list" -d 'List consoles'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and not __fish_seen_subcommand_from add remove kick grant list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l domain -d 'The domain (guest) name' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l uuid -d 'The domain\'s UUID [default: derived from driver and name, so that the same name always means the same domain]' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l driver -d 'The hypervisor driver' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l name -d 'The console\'s name within the domain, e.g. serial0' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l guest-listen -d 'logd listens on this UNIX socket and QEMU connects (-chardev socket,id=s0,path=SOCK,server=off,reconnect=1)' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l guest-connect -d 'logd connects to this UNIX socket, on which QEMU listens (server=on), and reconnects when QEMU restarts' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l log -d 'The console\'s log path' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l tcp -d 'TCP listener for subscribers, ADDR:PORT or PORT (binds 127.0.0.1); port 0 picks one' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l unix -d 'UNIX-socket listener for local subscribers' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l replay -d 'Bytes of recent output a new subscriber gets first [default: 16KiB; 0: none]' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l write -d 'Who may type into the guest: of the read-write subscribers, one or all' -r -f -a "exclusive\t'The longest-connected read-write subscriber types; the others\' input is discarded'
shared\t'Every read-write subscriber types'
none\t'Nobody types'"
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l max-subscribers -d 'Most subscribers at once [default: 32]; one more gets a one-line refusal' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l queue-limit -d 'A subscriber that falls this far behind is disconnected [default: 1MiB]' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l read-write -d 'UNIX subscribers (and `logdctl attach`) that may type: user names, uids, @GROUP or @GID, comma-separated or repeated' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l read-only -d 'UNIX subscribers that may watch, not type (the same forms). Anyone else, but root and logd\'s own user, is refused' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l tls -d 'TLS listener for remote subscribers, ADDR:PORT or PORT (binds 127.0.0.1), with client certificates (rustls). Needs --tls-dir' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l tls-dir -d 'The TLS credentials, in QEMU\'s tls-creds-x509 layout' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l tls-read-write -d 'TLS clients that may type: certificate subjects as RFC 4514 writes them ("CN=alice,O=Example", as `logdctl ps` shows them), or "CN=NAME" alone; repeated (not comma-separated: a subject has commas)' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l tls-read-only -d 'TLS clients that may watch, the same forms' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l tls-anonymous -d 'What a TLS client without a certificate gets' -r -f -a "refuse\t'Refused, told why (the default)'
read-only\t'Let in read-only'"
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l guest-fd -d 'logd makes a socketpair and gives one end to COMMAND as fd 3 (e.g. QEMU with -chardev socket,id=s0,fd=3); logdctl execs COMMAND'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l truncate -d 'Remove the log and its backups first'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l telnet -d 'Subscribers speak telnet (negotiation, 0xFF doubled) instead of raw bytes'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l persist -d 'Keep the console across restarts, until `logdctl console remove`'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l tcp-write -d 'Plain TCP subscribers may type into the guest'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l no-notices -d 'Send subscribers no notices of logd\'s own ("[logd: guest connected]", the greeting with their role, the write lock\'s moves): their stream is the console\'s output byte for byte, up to their last words when logd disconnects them'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l mark-log -d 'Mark the guest\'s connections and disconnections in the console\'s log, as lines of their own: "[-- logd: guest connected 2026-12-06T13:40:40.123Z --]". Without it the log holds the guest\'s output only'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from remove" -l domain -d 'The domain (guest) name' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from remove" -l uuid -d 'The domain\'s UUID [default: derived from driver and name, so that the same name always means the same domain]' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from remove" -l driver -d 'The hypervisor driver' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from remove" -l name -d 'The console\'s name within the domain' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from remove" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from remove" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from remove" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from remove" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from remove" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from kick" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from kick" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from kick" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from kick" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from kick" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from kick" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from grant" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from grant" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from grant" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from grant" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from grant" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from grant" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from list" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from list" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from list" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from list" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from list" -l json -d 'JSON: an array of objects with the fields of `ConsoleInfo` (see docs/protocol.md)'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from list" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add a console: its guest side, its log, and where subscribers connect'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove a console (its log stays)'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from help" -f -a "kick" -d 'Disconnect a subscriber (its id is in `logdctl ps`)'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from help" -f -a "grant" -d 'Give the write lock to a subscriber'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from help" -f -a "list" -d 'List consoles'
complete -c logdctl -n "__fish_logdctl_using_subcommand console; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c logdctl -n "__fish_logdctl_using_subcommand ps" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand ps" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand ps" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand ps" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand ps" -l json -d 'JSON (the admin snapshot; see docs/admin.md)'
complete -c logdctl -n "__fish_logdctl_using_subcommand ps" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand ps" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand log-level" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand log-level" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand log-level" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand log-level" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand log-level" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand log-level" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand events" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand events" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand events" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand events" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand events" -l json -d 'One JSON object per line (fields in docs/admin.md), the time as `at_ms`, milliseconds since the Unix epoch'
complete -c logdctl -n "__fish_logdctl_using_subcommand events" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand events" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand top" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand top" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand top" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand top" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand top" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand top" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand reexec" -l binary -d 'Run this binary instead of the configured one (made absolute against the current directory)' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand reexec" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand reexec" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand reexec" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand reexec" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand reexec" -l json -d 'Print the report as JSON: `at_ms`, `from_pid`, `to_pid`, `error` (null on success), `blackout_us`, `total_us`, `domains`, `fds`'
complete -c logdctl -n "__fish_logdctl_using_subcommand reexec" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand reexec" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand stats" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand stats" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand stats" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand stats" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand stats" -l json -d 'JSON: the domain as the admin socket reports it (see docs/admin.md)'
complete -c logdctl -n "__fish_logdctl_using_subcommand stats" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand stats" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand attach" -l domain -d 'The domain\'s name' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand attach" -l name -d 'The console\'s name' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand attach" -l escape -d 'The escape: `^]` (Ctrl-]), conserver\'s `^Ec`, or up to three keys; `^X` is Ctrl-X' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand attach" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand attach" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand attach" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand attach" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand attach" -l read-only -d 'Watch only (spy), even if you may type; ask for the lock later with the escape, `l`'
complete -c logdctl -n "__fish_logdctl_using_subcommand attach" -l force -d 'Take the write lock from whoever holds it (your uid must be read-write)'
complete -c logdctl -n "__fish_logdctl_using_subcommand attach" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand attach" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand run" -l domain -d 'The domain (guest) name' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand run" -l uuid -d 'The domain\'s UUID [default: derived from driver and name, so that the same name always means the same domain]' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand run" -l driver -d 'The hypervisor driver' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand run" -l log -d 'The log path (relative to logd\'s log root, or absolute under an allowed directory)' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand run" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand run" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand run" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand run" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand run" -l truncate -d 'Remove the log and its backups first'
complete -c logdctl -n "__fish_logdctl_using_subcommand run" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand append" -l domain -d 'The domain (guest) name' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand append" -l uuid -d 'The domain\'s UUID [default: derived from driver and name, so that the same name always means the same domain]' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand append" -l driver -d 'The hypervisor driver' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand append" -l log -d 'The log path (as for `run`)' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand append" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand append" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand append" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand append" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand append" -s n -d 'Do not add a newline at the end of the message'
complete -c logdctl -n "__fish_logdctl_using_subcommand append" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand append" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand position" -l log -d 'The log path' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand position" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand position" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand position" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand position" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand position" -l exact -d 'Print INODE:OFFSET:BIRTH, which adds the file\'s creation time'
complete -c logdctl -n "__fish_logdctl_using_subcommand position" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand position" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand read" -l log -d 'The log path' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand read" -l from -d 'Start at this position (as printed by `position`, INODE:OFFSET or INODE:OFFSET:BIRTH) [default: the oldest byte]' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand read" -l max -d 'Read at most this many bytes (suffixes K, M, G allowed) [default: everything]' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand read" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand read" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand read" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand read" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand read" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand read" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand tail" -l log -d 'The log path' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand tail" -l bytes -d 'How many bytes (suffixes K, M, G allowed); the default is what OpenStack\'s console-log shows' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand tail" -s n -l lines -d 'The last LINES lines instead, across rotated files (a last line without its newline counts); not with `--bytes`, which it replaces' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand tail" -l socket -d 'logd\'s socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand tail" -l admin-socket -d 'logd\'s admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and `console kick` and `grant` [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand tail" -l console-socket -d 'logd\'s console socket, for `attach` [default: beside the main socket, logd-console.sock]' -r -F
complete -c logdctl -n "__fish_logdctl_using_subcommand tail" -l server-uid -d 'Also trust a logd run by this uid' -r
complete -c logdctl -n "__fish_logdctl_using_subcommand tail" -s f -l follow -d 'Keep printing what is written, across rotations, until interrupted'
complete -c logdctl -n "__fish_logdctl_using_subcommand tail" -s F -l follow-retry -d 'As `--follow`, but a log that does not exist yet, or was removed, is waited for'
complete -c logdctl -n "__fish_logdctl_using_subcommand tail" -l autostart -d 'Start a daemon if none answers, even as root (a non-root user\'s default socket always gets one started)'
complete -c logdctl -n "__fish_logdctl_using_subcommand tail" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and not __fish_seen_subcommand_from console ps log-level events top reexec stats attach run append position read tail help" -f -a "console" -d 'Manage consoles: a guest\'s serial chardev with a log and TCP/UNIX subscribers'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and not __fish_seen_subcommand_from console ps log-level events top reexec stats attach run append position read tail help" -f -a "ps" -d 'Every stream of every domain, one row each, subscribers under their console'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and not __fish_seen_subcommand_from console ps log-level events top reexec stats attach run append position read tail help" -f -a "log-level" -d 'Change the daemon\'s log filter while it runs'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and not __fish_seen_subcommand_from console ps log-level events top reexec stats attach run append position read tail help" -f -a "events" -d 'Stream lifecycle events as they happen, until interrupted'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and not __fish_seen_subcommand_from console ps log-level events top reexec stats attach run append position read tail help" -f -a "top" -d 'A live view of every stream, busiest first, refreshed every second; q quits.'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and not __fish_seen_subcommand_from console ps log-level events top reexec stats attach run append position read tail help" -f -a "reexec" -d 'Hand everything to a new logd process (as SIGUSR1 does) and report how it went'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and not __fish_seen_subcommand_from console ps log-level events top reexec stats attach run append position read tail help" -f -a "stats" -d 'One domain in depth'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and not __fish_seen_subcommand_from console ps log-level events top reexec stats attach run append position read tail help" -f -a "attach" -d 'Connect this terminal to a console, as `virsh console` and conserver\'s `console` do'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and not __fish_seen_subcommand_from console ps log-level events top reexec stats attach run append position read tail help" -f -a "run" -d 'Run a command with its stdout and stderr going into a capped log'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and not __fish_seen_subcommand_from console ps log-level events top reexec stats attach run append position read tail help" -f -a "append" -d 'Append a message (a line) to a log, open or not'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and not __fish_seen_subcommand_from console ps log-level events top reexec stats attach run append position read tail help" -f -a "position" -d 'Print the position INODE:OFFSET of the end of a log'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and not __fish_seen_subcommand_from console ps log-level events top reexec stats attach run append position read tail help" -f -a "read" -d 'Write a log\'s raw bytes to stdout, oldest first, across rotated files'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and not __fish_seen_subcommand_from console ps log-level events top reexec stats attach run append position read tail help" -f -a "tail" -d 'Print the last bytes, or lines, of a log across rotated files'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and not __fish_seen_subcommand_from console ps log-level events top reexec stats attach run append position read tail help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and __fish_seen_subcommand_from console" -f -a "add" -d 'Add a console: its guest side, its log, and where subscribers connect'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and __fish_seen_subcommand_from console" -f -a "remove" -d 'Remove a console (its log stays)'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and __fish_seen_subcommand_from console" -f -a "kick" -d 'Disconnect a subscriber (its id is in `logdctl ps`)'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and __fish_seen_subcommand_from console" -f -a "grant" -d 'Give the write lock to a subscriber'
complete -c logdctl -n "__fish_logdctl_using_subcommand help; and __fish_seen_subcommand_from console" -f -a "list" -d 'List consoles'
