# The seed's experiment read from hb-monitor's CSV (--csv): the figure's per-second series, or a
# table per phase. One copy for examples/seed/run.sh and bench/run's `seed` scenario alike.
#
#   awk -F, -v mode=series -v t0=T0 -v end=T3 -f seed.awk monitor.csv > seed.dat
#       one row per second in [T0, T3) with a report of either type, columns:
#       1 seconds since T0, 2 the second (Unix time), 3 client requests/s, 4 server requests/s,
#       5 connections open at the second's end (servers: opened less closed, added up), 6 packets/s received and 7 transmitted by the servers' hosts,
#       8 client shake latency p50 and 9 p99 (us, the worst client process), 10 shake envelopes
#       generated and 11 handed out (servers); '?' where that type has no row for the second.
#   awk -F, -v mode=phases -v phases="NAME:START:STEADY:END ..." -f seed.awk monitor.csv
#       a header line, then one line per phase (whitespace-separated, '-' where there is no data):
#       name, start, end, seconds; means over the steady seconds [STEADY, END): shakes/s sent by
#       the clients and seen by the servers (frame_shake), server requests/s, packets/s received and transmitted by
#       the servers' hosts; sums over the whole phase [START, END): connections opened, shake
#       envelopes generated and handed out, send-envelopes created, claims granted; connections
#       open at the phase's last second with a server row.
#
# Requests count shakes and claims (both sides); seconds are those the counts belong to.

function need(name) {
    if (!(name in col)) {
        printf "seed.awk: the CSV has no column '%s'\n", name > "/dev/stderr"
        bad = 1
        exit 2
    }
    return col[name]
}

NR == 1 {
    for (i = 1; i <= NF; i++)
        col[$i] = i
    c_second = need("second"); c_type = need("type"); c_req = need("requests")
    c_shake = need("frame_shake"); c_rx = need("nic_rx_packets"); c_tx = need("nic_tx_packets")
    c_open = need("conn_opened"); c_close = need("conn_closed"); c_gen = need("shake_envelopes")
    c_out = need("shake_handed_out"); c_send = need("send_created")
    c_claims = need("claims_granted"); c_p50 = need("latency_p50_us")
    c_p99 = need("latency_p99_us")
    next
}

{
    s = $c_second + 0
    if (first == "" || s < first)
        first = s
    if (last == "" || s > last)
        last = s
    if ($c_type == "server") {
        srv[s] = 1
        sreq[s] = $c_req; shake[s] = $c_shake; rx[s] = $c_rx; tx[s] = $c_tx
        opened[s] = $c_open; closed[s] = $c_close
        gen[s] = $c_gen; out[s] = $c_out; send[s] = $c_send; claims[s] = $c_claims
    } else if ($c_type == "client") {
        cli[s] = 1
        creq[s] = $c_req; cshake[s] = $c_shake; p50[s] = $c_p50; p99[s] = $c_p99
    }
}

function val(have, v) {
    return have ? v : "?"
}

function mean(sum, n) {
    return n ? sprintf("%.0f", sum / n) : "-"
}

function phase_line(name, start, steady, end,    s, n_c, n_s, c_sum, sh_sum, sr_sum, rx_sum,
                    tx_sum, o_sum, g_sum, h_sum, se_sum, cl_sum, open_now) {
    open_now = "-"
    for (s = start; s < end; s++) {
        if (s in srv) {
            o_sum += opened[s]; g_sum += gen[s]; h_sum += out[s]; se_sum += send[s]
            cl_sum += claims[s]; open_now = conn[s]
            if (s >= steady) {
                n_s++; sh_sum += shake[s]; sr_sum += sreq[s]; rx_sum += rx[s]; tx_sum += tx[s]
            }
        }
        if ((s in cli) && s >= steady) {
            n_c++; c_sum += cshake[s]
        }
    }
    printf "%s %d %d %d %s %s %s %s %s %.0f %.0f %.0f %.0f %.0f %s\n", name, start, end, end - start,
           mean(c_sum, n_c), mean(sh_sum, n_s), mean(sr_sum, n_s), mean(rx_sum, n_s),
           mean(tx_sum, n_s), o_sum, g_sum, h_sum, se_sum, cl_sum, open_now
}

END {
    if (bad)
        exit 2
    # Connections open at the end of each second: the per-second opened less closed, added up (the
    # cumulative columns are the reporters' totals when they sent, some 3 s later).
    for (s = first; first != "" && s <= last; s++) {
        running += opened[s] - closed[s]
        if (s in srv)
            conn[s] = running
    }
    if (mode == "series") {
        if (first == "")
            exit 0
        lo = t0 != "" ? t0 + 0 : first
        hi = end != "" ? end + 0 : last + 1
        for (s = lo; s < hi; s++) {
            if (!(s in srv) && !(s in cli))
                continue
            print s - lo, s, val(s in cli, creq[s]), val(s in srv, sreq[s]), val(s in srv, conn[s]),
                  val(s in srv, rx[s]), val(s in srv, tx[s]), val(s in cli, p50[s]),
                  val(s in cli, p99[s]), val(s in srv, gen[s]), val(s in srv, out[s])
        }
    } else if (mode == "phases") {
        print "phase start end seconds client_shakes_ps server_shakes_ps server_rps nic_rx_pps",
              "nic_tx_pps conn_opened envelopes_generated envelopes_handed_out send_created",
              "claims_granted connections"
        n = split(phases, list, " ")
        for (i = 1; i <= n; i++) {
            if (split(list[i], f, ":") != 4) {
                printf "seed.awk: phase '%s' is not NAME:START:STEADY:END\n", list[i] > "/dev/stderr"
                exit 2
            }
            phase_line(f[1], f[2] + 0, f[3] + 0, f[4] + 0)
        }
    } else {
        printf "seed.awk: mode is 'series' or 'phases', not '%s'\n", mode > "/dev/stderr"
        exit 2
    }
}
