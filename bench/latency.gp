# Latency percentile chart of bench/run. Called with -e setting:
#   datadir  directory of PANEL-CONTENDER.dat files ("nines latency_us")
#   out      the PNG to write
#   names_saturation, names_rate, names_events, names_ttft
#            the contenders with data in each panel, separated by spaces
#   halfrate, streams  numbers for the panel titles
# The x axis is -log10(1 - p), so p50, p90, p99, p99.9 and p99.99 are
# evenly spaced; the y axis is logarithmic, in milliseconds.

set terminal pngcairo size 1600,1100 font "DejaVu Sans,12"
set output out
set multiplot layout 2,2 title "tollgate bench: latency percentiles (lower is better)" font ",15"

set logscale y
set format y "%g"
set grid xtics ytics mytics lc rgb "#dddddd"
set xrange [0.25:4.1]
set xtics ("p50" 0.30103, "p75" 0.60206, "p90" 1, "p95" 1.30103, "p99" 2, "p99.9" 3, "p99.99" 4)
set ylabel "milliseconds"
set key outside below center horizontal

colour(n) = n eq "direct" ? "#7f7f7f" : n eq "nginx" ? "#2ca02c" : n eq "tollgate" ? "#1f77b4" : \
    n eq "tollgate-plain" ? "#17becf" : n eq "tollgate-prompts" ? "#9467bd" : "#d62728"

do for [panel in "saturation rate events ttft"] {
    if (panel eq "saturation") { set title "non-streaming at saturation (wrk)" }
    if (panel eq "rate") { set title sprintf("non-streaming at %s requests/s (half of nginx's maximum)", halfrate) }
    if (panel eq "events") { set title sprintf("per-token relay latency, %s concurrent streams", streams) }
    if (panel eq "ttft") { set title sprintf("time to first token, %s concurrent streams", streams) }
    names = value("names_" . panel)
    plot for [n in names] sprintf("%s/%s-%s.dat", datadir, panel, n) \
        using 1:($2 / 1000) with linespoints lw 2 pt 7 ps 1 lc rgb colour(n) title n
}
unset multiplot
