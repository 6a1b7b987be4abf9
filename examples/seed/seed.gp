# The seed's figure: requests/s over time, clients (wide) and servers (narrow, on top), over its
# three regions (connect, rate 1, rate 2) shaded, with the connections open and the target rates;
# below, the packets/s the servers' hosts received and transmitted. Drawn from seed.awk's series
# (mode=series).
# One copy for examples/seed/run.sh and bench/run's `seed` scenario alike:
#
#   gnuplot -e "dat='seed.dat'; png='seed.png'; t1=12; t2=22; t3=32; r1=1000; r2=2000; \
#               users=10000; what='10,000 users'" examples/seed/seed.gp
#
# A second's counts are drawn at its middle. t1, t2, t3: seconds since the connect phase began at which rate 1 starts, rate 2 starts and the
# run ends; r1, r2: the target shakes/s; what: the subtitle.

if (!exists("what")) what = ''
set terminal png size 1000,700 font ',10'
set output png
set datafile missing '?'
set multiplot layout 2,1 title sprintf("The seed's three phases: connect, %d/s, %d/s (%s)", r1, r2, what)

set object 1 rect from 0, graph 0 to t1, graph 1 behind fillcolor rgb '#eef3fb' fillstyle solid noborder
set object 2 rect from t1, graph 0 to t2, graph 1 behind fillcolor rgb '#f4fbee' fillstyle solid noborder
set object 3 rect from t2, graph 0 to t3, graph 1 behind fillcolor rgb '#fbf1ee' fillstyle solid noborder
set label 1 'connect' at t1 / 2.0, graph 0.06 center
set label 2 sprintf('%d/s', r1) at (t1 + t2) / 2.0, graph 0.06 center
set label 3 sprintf('%d/s', r2) at (t2 + t3) / 2.0, graph 0.06 center
set xrange [0:t3]
set grid ytics
set key top center horizontal opaque box
set lmargin 10
set rmargin 10

target(x) = x < t1 ? NaN : x < t2 ? r1 : x < t3 ? r2 : NaN
set samples 1000
set ylabel 'requests/s (shakes and claims)'
set yrange [0:r2 * 1.25]
set y2label 'connections open'
set y2range [0:users * 1.4]
set y2tics
set ytics nomirror
unset xlabel
plot dat using ($1 + 0.5):3 with lines lw 4 lc rgb '#f0a060' title 'clients', \
     dat using ($1 + 0.5):4 with lines lw 1.5 lc rgb '#1f5fbf' title 'servers', \
     target(x) with lines lw 1 dt 3 lc rgb '#555555' title 'target', \
     dat using ($1 + 0.5):5 axes x1y2 with lines lw 1 lc rgb '#3a9a3a' title 'connections (right)'

unset label 1
unset label 2
unset label 3
unset y2label
unset y2tics
set ytics mirror
set yrange [0:*]
set offsets 0, 0, graph 0.3, 0
set ylabel 'packets/s (servers'' hosts)'
set xlabel 'seconds since the connect phase began'
plot dat using ($1 + 0.5):6 with lines lw 2 lc rgb '#7b3fbf' title 'received', \
     dat using ($1 + 0.5):7 with lines lw 2 dt 2 lc rgb '#bf3f5f' title 'transmitted'
unset multiplot
