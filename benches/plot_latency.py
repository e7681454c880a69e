#!/usr/bin/env python3
"""Draws push-to-receive latency percentile curves as an SVG, from the CSV files herald-bench
writes with --latency-csv (`percentile,latency_us`, percentile in 0..100). One curve per file,
named after the file. The x axis is spaced in "nines" (50%, 90%, 99%, 99.9%, ...), the y axis is
logarithmic. Standard library only.

    benches/plot_latency.py OUT.svg TITLE a.csv b.csv ...
"""
import csv
import math
import os
import sys

W, H = 760, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 40, 50
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]


def nines(p):
    """Percentile to x position: 0 at 0%, 1 at 90%, 2 at 99%, ..."""
    return -math.log10(max(1e-6, 1 - p / 100.0))


def load(path):
    points = []
    with open(path, newline="") as f:
        for row in csv.reader(f):
            try:
                p, us = float(row[0]), float(row[1])
            except (ValueError, IndexError):
                continue
            if p < 100.0 and us > 0:
                points.append((nines(p), us))
    return points


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, title, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    series = [(os.path.splitext(os.path.basename(f))[0], load(f)) for f in files]
    series = [(n, pts) for n, pts in series if pts]
    if not series:
        sys.exit("no data points in " + " ".join(files))
    xmax = max(4.0, max(x for _, pts in series for x, _ in pts))
    ys = [y for _, pts in series for _, y in pts]
    ylo = 10 ** math.floor(math.log10(min(ys)))
    yhi = 10 ** math.ceil(math.log10(max(ys)))
    if yhi <= ylo:
        yhi = ylo * 10
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(x):
        return LEFT + pw * x / xmax

    def sy(y):
        return TOP + ph * (1 - (math.log10(y) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo)))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>',
    ]
    for i in range(int(xmax) + 1):
        label = {0: "0%", 1: "90%"}.get(i, "99" + ("." + "9" * (i - 2) if i > 2 else "") + "%")
        parts.append(f'<line x1="{sx(i)}" y1="{TOP}" x2="{sx(i)}" y2="{TOP + ph}" stroke="#ddd"/>')
        parts.append(f'<text x="{sx(i)}" y="{TOP + ph + 18}" text-anchor="middle">{label}</text>')
    decade = ylo
    while decade <= yhi * 1.001:
        label = f"{decade / 1000:g} ms" if decade >= 1000 else f"{decade:g} µs"
        parts.append(f'<line x1="{LEFT}" y1="{sy(decade)}" x2="{LEFT + pw}" y2="{sy(decade)}" stroke="#ddd"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{sy(decade) + 4}" text-anchor="end">{label}</text>')
        decade *= 10
    parts.append(f'<text x="{LEFT + pw / 2}" y="{H - 12}" text-anchor="middle">percentile</text>')
    for i, (name, pts) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(pts))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        ly = TOP + 16 + 18 * i
        parts.append(f'<line x1="{W - RIGHT + 12}" y1="{ly}" x2="{W - RIGHT + 36}" y2="{ly}" stroke="{color}" stroke-width="3"/>')
        parts.append(f'<text x="{W - RIGHT + 42}" y="{ly + 4}">{name}</text>')
    parts.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
