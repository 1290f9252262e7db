package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/brightrun/brightrun/shared/api"
	"github.com/brightrun/brightrun/shared/client"
	"github.com/brightrun/brightrun/shared/pipeline"
)

func (a *app) webhooksCommand() *cobra.Command {
	return group("webhooks", "Send your dataset and job events to an HTTPS endpoint, signed (Standard Webhooks)",
		a.webhooksAddCommand(),
		a.webhooksListCommand(),
		a.webhooksDeliveriesCommand(),
		a.webhooksRedeliverCommand(),
		a.webhooksRotateCommand(),
		a.webhooksRemoveCommand(),
	)
}

func (a *app) webhooksAddCommand() *cobra.Command {
	var (
		events      []string
		description string
	)
	c := &cobra.Command{
		Use:   "add URL",
		Short: "Register an endpoint; prints its signing secret (shown only now)",
		Long: `Register an HTTPS endpoint for your events: ` + strings.Join(pipeline.OutboundEventTypes, ", ") + `
(all of them unless --event names some). Each is POSTed as {"type", "timestamp",
"data"} with the Standard Webhooks headers webhook-id, webhook-timestamp and
webhook-signature; verify them with the secret this prints (any Standard
Webhooks library does). A delivery that does not get a 2xx answer is tried
again for over a day; 410 Gone disables the endpoint.`,
		Example: "  brightrun webhooks add https://hooks.example.com/brightrun --event job.completed --event job.failed",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, e := range events {
				if !pipeline.ValidEventType(e) {
					return usagef(cmd, "--event %q is not an event type: one of %s", e, strings.Join(pipeline.OutboundEventTypes, ", "))
				}
			}
			req := api.CreateWebhookRequest{URL: args[0], Description: description}
			if len(events) > 0 {
				req.EventTypes = &events
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			e, err := cl.CreateWebhook(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(e)
			}
			fmt.Fprintf(a.stdout, "registered webhook %s for %s\n", e.ID, strings.Join(e.EventTypes, ", "))
			fmt.Fprintf(a.stdout, "secret: %s\n", e.Secret)
			fmt.Fprintln(a.stdout, "keep the secret: it is shown only now (`brightrun webhooks rotate` makes a new one)")
			return nil
		},
	}
	c.Flags().StringArrayVar(&events, "event", nil, "an event type to receive (repeatable; default: all)")
	c.Flags().StringVar(&description, "description", "", "what the endpoint is for")
	return c
}

func (a *app) webhooksListCommand() *cobra.Command {
	var o client.ListOptions
	c := &cobra.Command{
		Use:   "list",
		Short: "List your webhook endpoints, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			list, err := cl.ListWebhooks(cmd.Context(), o)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(list)
			}
			if len(list.Webhooks) == 0 {
				fmt.Fprintln(a.stdout, "no webhooks: register one with `brightrun webhooks add URL`")
				return nil
			}
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "ID\tURL\tEVENTS\tSTATE\tCREATED")
			for _, e := range list.Webhooks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.ID, e.URL, eventsText(e.EventTypes), endpointState(&e), formatTime(e.CreatedAt))
			}
			tw.Flush()
			printNextPage(a.stdout, list.NextCursor)
			return nil
		},
	}
	addListFlags(c, &o)
	return c
}

// eventsText is "all" or the types, comma-separated.
func eventsText(types []string) string {
	all := slices.Clone(pipeline.OutboundEventTypes)
	slices.Sort(all)
	if slices.Equal(all, types) {
		return "all"
	}
	return strings.Join(types, ",")
}

func endpointState(e *api.WebhookEndpointView) string {
	if e.Disabled {
		return "disabled (" + e.DisabledReason + ")"
	}
	return "enabled"
}

func (a *app) webhooksDeliveriesCommand() *cobra.Command {
	var o client.ListOptions
	c := &cobra.Command{
		Use:   "deliveries WEBHOOK",
		Short: "Show an endpoint's delivery log: each event, its status, tries and answers",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			list, err := cl.WebhookDeliveries(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(list)
			}
			if len(list.Deliveries) == 0 {
				fmt.Fprintln(a.stdout, "no deliveries yet")
				return nil
			}
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "ID\tEVENT\tSTATUS\tTRIES\tLAST ANSWER\tNEXT TRY\tCREATED")
			for _, d := range list.Deliveries {
				next := "-"
				if d.NextAttemptAt != nil {
					next = formatTime(*d.NextAttemptAt)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", d.ID, d.EventType, d.Status, d.AttemptCount, lastAnswer(&d), next, formatTime(d.CreatedAt))
			}
			tw.Flush()
			printNextPage(a.stdout, list.NextCursor)
			return nil
		},
	}
	addListFlags(c, &o)
	return c
}

// lastAnswer is the last try's status code, or why none came.
func lastAnswer(d *api.WebhookDeliveryView) string {
	if len(d.Attempts) == 0 {
		return "-"
	}
	last := d.Attempts[len(d.Attempts)-1]
	if last.StatusCode != 0 {
		return fmt.Sprint(last.StatusCode)
	}
	return oneLine(last.Error)
}

func (a *app) webhooksRedeliverCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "redeliver WEBHOOK DELIVERY",
		Short: "Send a delivery's event again now (same webhook-id, new signature)",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			d, err := cl.Redeliver(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(d)
			}
			fmt.Fprintf(a.stdout, "redelivering %s (%s): see `brightrun webhooks deliveries %s`\n", d.ID, d.EventType, args[0])
			return nil
		},
	}
}

func (a *app) webhooksRotateCommand() *cobra.Command {
	var overlap time.Duration
	c := &cobra.Command{
		Use:   "rotate WEBHOOK",
		Short: "Give an endpoint a new secret; the old one keeps signing for --overlap",
		Long: `Give an endpoint a new signing secret. During --overlap (default 24h) every
delivery carries two signatures, the new secret's and the old's, so that the
receiver can switch to the new secret; after it, the new secret's only.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if overlap < 0 || overlap > 7*24*time.Hour || overlap%time.Second != 0 {
				return usagef(cmd, "--overlap must be whole seconds from 0 to 168h, got %s", overlap)
			}
			seconds := int64(overlap / time.Second)
			cl, err := a.client()
			if err != nil {
				return err
			}
			e, err := cl.RotateWebhook(cmd.Context(), args[0], api.RotateWebhookRequest{OverlapSeconds: &seconds})
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(e)
			}
			fmt.Fprintf(a.stdout, "new secret: %s\n", e.Secret)
			if e.PreviousSecretExpiresAt != nil {
				fmt.Fprintf(a.stdout, "the old secret also signs until %s\n", formatTime(*e.PreviousSecretExpiresAt))
			} else {
				fmt.Fprintln(a.stdout, "the old secret no longer signs")
			}
			return nil
		},
	}
	c.Flags().DurationVar(&overlap, "overlap", 24*time.Hour, "how long the old secret keeps signing beside the new")
	return c
}

func (a *app) webhooksRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "remove WEBHOOK",
		Short: "Delete an endpoint and its delivery log",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			if err := cl.DeleteWebhook(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"id": args[0], "deleted": true})
			}
			fmt.Fprintf(a.stdout, "removed webhook %s\n", args[0])
			return nil
		},
	}
}
