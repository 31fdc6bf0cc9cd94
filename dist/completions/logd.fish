# Generated from the clap definitions by kit::man; do not edit. Regenerate: LOGD_BLESS=1 cargo test --locked -p logd --bins
complete -c logd -l config -d 'Read settings from this TOML file (see CONFIGURATION in logd(8))' -r -F
complete -c logd -l socket -d 'Listen on this UNIX socket instead of the default' -r -F
complete -c logd -l admin-socket -d 'Serve the admin socket here [default: beside the main socket, logd-admin.sock]' -r -F
complete -c logd -l console-socket -d 'Serve the console socket here: `logdctl attach` for any local user, each console judging the caller by its lists [default: beside the main socket, logd-console.sock]' -r -F
complete -c logd -l virtlogd-socket -d 'Also serve libvirt\'s virtlogd RPC on this socket, so that libvirtd uses logd in place of virtlogd' -r -F
complete -c logd -l log-root -d 'Keep logs under this directory instead of the default' -r -F
complete -c logd -l consoles-file -d 'Keep the consoles added with `logdctl console add --persist` in FILE' -r -F
complete -c logd -l idle-exit -d 'Exit after SECONDS with no open log and no client; 0 or absent: never' -r
complete -c logd -s v -l verbose -d 'More log output: -v for debug, -vv for trace'
complete -c logd -s h -l help -d 'Print help (see more with \'--help\')'
complete -c logd -s V -l version -d 'Print version'
