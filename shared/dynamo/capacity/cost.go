package capacity

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Prices are DynamoDB's on-demand prices.
type Prices struct {
	// Source says where and when the prices were read.
	Source string
	// USDPerMillionWRU and USDPerMillionRRU are the request unit prices: a
	// WRU writes 1 KB, an RRU reads 4 KB strongly consistent (two
	// eventually consistent); a transactional request counts twice.
	USDPerMillionWRU, USDPerMillionRRU float64
	// USDPerGBMonth is the storage price.
	USDPerGBMonth float64
}

// USEast1 are us-east-1's on-demand prices for the Standard table class
// since AWS halved on-demand throughput prices on 2024-11-01 (read on
// the DynamoDB pricing page and its reports in 2026-12): the free tier's
// 25 GB is left out.
var USEast1 = Prices{
	Source:           "us-east-1, on-demand, Standard table class, prices since 2024-11-01",
	USDPerMillionWRU: 0.625, USDPerMillionRRU: 0.125, USDPerGBMonth: 0.25,
}

// DaysPerMonth is an average month: 730 hours.
const DaysPerMonth = 730.0 / 24

// MonthlyCost is what one scale of the busy day costs a month.
type MonthlyCost struct {
	Running            int
	CreatedPerDay      int
	Window             time.Duration
	WCU, RCU           float64 // a month's units
	WriteUSD, ReadUSD  float64
	StorageGBPerMonth  float64 // stored bytes added each month
	StorageUSDPerMonth float64 // what one month's additions cost a month once stored
	PeakWCU            float64 // the busiest partition's busiest second
	PeakPartition      string
}

// RequestUSD is the month's request cost.
func (c MonthlyCost) RequestUSD() float64 { return c.WriteUSD + c.ReadUSD }

// CostWindow is how long a scale is simulated: long enough that jobs are
// created and end and reconciliation runs several times even at small
// scales (about as many callbacks as two minutes of 10,000 jobs).
func CostWindow(running int) time.Duration {
	w := time.Duration(float64(2*time.Minute) * 10_000 / float64(max(1, running)))
	return min(max(w, 2*time.Minute), time.Hour)
}

// Costs simulates day scaled to each number of running jobs and prices
// a month of it.
func Costs(ctx context.Context, day Day, running []int, p Prices) ([]MonthlyCost, error) {
	var out []MonthlyCost
	for _, n := range running {
		d := day.Scaled(n)
		d.Window = CostWindow(n)
		r, err := Simulate(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("%d running jobs: %w", n, err)
		}
		c := MonthlyCost{Running: n, CreatedPerDay: d.CreatedPerDay, Window: d.Window,
			WCU: r.DayWCU() * DaysPerMonth, RCU: r.DayRCU() * DaysPerMonth}
		c.WriteUSD = c.WCU / 1e6 * p.USDPerMillionWRU
		c.ReadUSD = c.RCU / 1e6 * p.USDPerMillionRRU
		c.StorageGBPerMonth = r.StorageBytesPerDay * DaysPerMonth / 1e9
		c.StorageUSDPerMonth = c.StorageGBPerMonth * p.USDPerGBMonth
		if len(r.Peaks) > 0 {
			c.PeakWCU, c.PeakPartition = r.Peaks[0].PeakWCU, r.Peaks[0].Name()
		}
		out = append(out, c)
	}
	return out, nil
}

// PrintCosts writes the cost table and its assumptions.
func PrintCosts(out io.Writer, day Day, costs []MonthlyCost, p Prices) {
	fmt.Fprintf(out, "Prices: %s: $%.3f per million write request units, $%.3f per million read request units, $%.2f per GB-month stored.\n",
		p.Source, p.USDPerMillionWRU, p.USDPerMillionRRU, p.USDPerGBMonth)
	fmt.Fprintf(out, "A month is %.1f days. Traffic as the busy day, scaled: each running job calls back every %s (progress) and checkpoints every %s; %d jobs are created a day per 10,000 running; reconcile every %s.\n",
		DaysPerMonth, day.ProgressEvery, day.CheckpointEvery, day.CreatedPerDay*10_000/max(1, day.Running), day.ReconcileEvery)
	fmt.Fprintf(out, "Each scale is simulated at full rate for its window and scaled to a month; API reads by users (job views, lists, watch) are not included.\n")
	fmt.Fprintf(out, "Stored bytes only grow: the store keeps events and metric points until a LogRetention is set; the last columns are a month's additions and what they cost each month after.\n\n")
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "running jobs\tjobs created/day\twindow\tWRU/month\tRRU/month\twrites $/month\treads $/month\trequests $/month\tstorage added GB/month\t+$/month per month stored\tpeak partition WCU/s")
	for _, c := range costs {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%.3g\t%.3g\t%.2f\t%.2f\t%.2f\t%.1f\t%.2f\t%.0f (%s)\n", c.Running, c.CreatedPerDay, c.Window, c.WCU, c.RCU,
			c.WriteUSD, c.ReadUSD, c.RequestUSD(), c.StorageGBPerMonth, c.StorageUSDPerMonth, c.PeakWCU, c.PeakPartition)
	}
	tw.Flush()
}
