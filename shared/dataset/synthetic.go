package dataset

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
)

// WriteSynthetic writes a realistic synthetic chat dataset of about size
// bytes to w: whole lines until size is reached, so the output ends at most
// one line (a few KB) past size. The conversations are customer-support
// chats of a fictitious coffee company: a system prompt on most lines,
// one to four user/assistant turns of English prose, code snippets with
// escaped quotes and newlines on some, names and places with non-ASCII
// letters, and now and then an assistant turn with weight 0.
//
// When errorEvery > 0, every errorEvery-th line (line errorEvery,
// 2*errorEvery, ...) carries one error, cycling through invalid_json,
// invalid_role, empty_content, missing_assistant, invalid_weight,
// invalid_content, system_not_first, not_object, missing_messages and
// invalid_utf8. errorEvery 1 makes every line bad.
//
// The output depends only on size, seed and errorEvery.
func WriteSynthetic(w io.Writer, size int64, seed int64, errorEvery int) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	g := synth{rng: rand.New(rand.NewPCG(uint64(seed), 0x5eed_da7a_5e7))}
	var written int64
	for n := 1; written < size; n++ {
		kind := -1
		if errorEvery > 0 && n%errorEvery == 0 {
			kind = (n/errorEvery - 1) % numSynthErrors
		}
		g.line = g.conversation(g.line[:0], kind)
		if _, err := bw.Write(g.line); err != nil {
			return fmt.Errorf("write synthetic dataset: %w", err)
		}
		written += int64(len(g.line))
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write synthetic dataset: %w", err)
	}
	return nil
}

// The errors WriteSynthetic plants, in the order it cycles through them.
const (
	synthInvalidJSON = iota
	synthInvalidRole
	synthEmptyContent
	synthMissingAssistant
	synthInvalidWeight
	synthInvalidContent
	synthSystemNotFirst
	synthNotObject
	synthMissingMessages
	synthInvalidUTF8
	numSynthErrors
)

type synth struct {
	rng  *rand.Rand
	line []byte
	text []byte
}

func (g *synth) intn(n int) int { return int(g.rng.Uint64() % uint64(n)) }

func (g *synth) pick(s []string) string { return s[g.intn(len(s))] }

// conversation appends one line; kind is the error to plant, or -1.
func (g *synth) conversation(b []byte, kind int) []byte {
	if kind == synthNotObject {
		b = append(b, `[{"role": "user", "content": `...)
		b = appendJSONString(b, g.userText())
		return append(b, "}]\n"...)
	}
	if kind == synthMissingMessages {
		b = append(b, `{"conversation": [`...)
	} else {
		b = append(b, `{"messages": [`...)
	}
	first := true
	msg := func(role, content string, weight int) {
		if !first {
			b = append(b, ", "...)
		}
		first = false
		b = append(b, `{"role": "`...)
		b = append(b, role...)
		b = append(b, `", "content": `...)
		b = appendJSONString(b, content)
		if weight >= 0 {
			b = append(b, `, "weight": `...)
			b = strconv.AppendInt(b, int64(weight), 10)
		}
		b = append(b, '}')
	}
	if g.intn(10) < 7 {
		msg("system", g.pick(synthSystem), -1)
	}
	turns := 1 + g.intn(4)
	zeroWeight := turns > 1 && g.intn(20) == 0
	for t := 0; t < turns; t++ {
		msg("user", g.userText(), -1)
		if kind == synthMissingAssistant {
			continue
		}
		weight := -1
		if zeroWeight && t == 0 {
			weight = 0
		}
		if t == turns-1 {
			switch kind {
			case synthInvalidRole:
				msg("bot", g.assistantText(), -1)
				continue
			case synthEmptyContent:
				msg("assistant", "", -1)
				continue
			case synthInvalidWeight:
				weight = 2
			case synthInvalidContent:
				b = append(b, `, {"role": "assistant", "content": [{"type": "text", "text": "See the attached label."}]}`...)
				continue
			case synthSystemNotFirst:
				msg("system", g.pick(synthSystem), -1)
			case synthInvalidUTF8:
				b = append(b, `, {"role": "assistant", "content": "Caf`...)
				b = append(b, 0xe9) // Latin-1 é: not UTF-8
				b = append(b, ` order confirmed."}`...)
				continue
			}
		}
		msg("assistant", g.assistantText(), weight)
	}
	b = append(b, "]}"...)
	if kind == synthInvalidJSON {
		b = b[:len(b)-1] // drop the closing brace
	}
	return append(b, '\n')
}

func (g *synth) userText() string {
	t := g.text[:0]
	t = append(t, g.pick(synthGreetings)...)
	t = fmt.Appendf(t, g.pick(synthQuestions), g.pick(synthProducts), g.order())
	if g.intn(2) == 0 {
		t = append(t, ' ')
		t = fmt.Appendf(t, g.pick(synthDetails), g.pick(synthNames), g.pick(synthPlaces))
	}
	g.text = t
	return string(t)
}

func (g *synth) assistantText() string {
	t := g.text[:0]
	t = fmt.Appendf(t, g.pick(synthOpeners), g.pick(synthNames))
	for n := 2 + g.intn(5); n > 0; n-- {
		t = append(t, ' ')
		t = fmt.Appendf(t, g.pick(synthAnswers), g.pick(synthProducts), g.order(), 2+g.intn(9))
	}
	if g.intn(7) == 0 {
		t = append(t, "\n\n"...)
		t = append(t, g.pick(synthCode)...)
	}
	t = append(t, ' ')
	t = append(t, g.pick(synthClosers)...)
	g.text = t
	return string(t)
}

func (g *synth) order() string {
	return fmt.Sprintf("TW-%06d", g.intn(1_000_000))
}

// appendJSONString appends s as a JSON string, escaping what must be and
// leaving other UTF-8 as it is.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\t':
			b = append(b, '\\', 't')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = fmt.Appendf(b, `\u%04x`, c)
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

var synthSystem = []string{
	"You are Tidewell Coffee's support assistant. Be warm, brief and accurate. Never promise refunds over $50 without a supervisor.",
	"You are the customer-support assistant of Tidewell Coffee, a specialty coffee roaster that sells beans, grinders and subscriptions. Answer in plain English; when you cannot help, offer a hand-off to a human agent.",
	"You help Tidewell Coffee customers with orders, deliveries, subscriptions and brewing equipment. Ask for the order number when you need it. Keep answers under 150 words.",
	"Tidewell Coffee assistant. Tone: friendly, professional. Policies: 30-day returns on unopened goods, free shipping over $40, subscriptions can be paused for up to 3 months.",
	"You are Tidewell's wholesale partner assistant. Partners integrate with the Tidewell Partner API (REST, JSON). Give exact code when asked and mention rate limits (120 requests per minute).",
}

var synthGreetings = []string{
	"Hi! ", "Hello, ", "Hey there. ", "", "", "Good morning! ", "Hi team, ", "Bonjour, ", "Hallo! ", "",
}

var synthQuestions = []string{
	"My %s hasn't arrived yet. The order number is %s and tracking hasn't moved in four days.",
	"Can I swap the %s in my subscription for something darker? My order is %s.",
	"I was charged twice for the %s on order %s. Can you check?",
	"How do I pause my subscription? I get the %s every two weeks (order %s).",
	"The %s I received has a cracked lid. Order %s. What should I do?",
	"Is the %s compatible with a Moka pot? I ordered it under %s.",
	"I'd like to return the %s from order %s — it's still sealed.",
	"What's the difference between the %s and the house blend? Thinking of adding it to %s.",
	"Our café wants to order the %s in bulk through the Partner API. How do I create an order like %s programmatically?",
	"Why did the price of the %s go up? My last invoice (%s) was higher than usual.",
}

var synthDetails = []string{
	"The parcel is addressed to %s in %s.",
	"It's a gift for %s, who lives in %s, so I'd rather not have it left outside.",
	"Please send any updates to %s; we've just moved to %s.",
	"My partner %s placed it from our account while we were in %s.",
}

var synthProducts = []string{
	"Harbor Light espresso beans", "Ridgeline decaf", "Kyoto cold-brew kit", "Tidewell burr grinder",
	"Ethiopia Guji single origin", "pour-over starter set", "Morning Fog blend", "ceramic dripper",
	"Colombia Huila beans", "gooseneck kettle", "Sumatra dark roast", "travel mug",
}

var synthNames = []string{
	"Ana", "José", "Zoë", "Mei", "Søren", "Priya", "Łukasz", "Amélie", "Björn", "Chloé", "Kenji", "Olúmìdé",
	"Nguyễn", "Fatima", "Sam", "Dvořák",
}

var synthPlaces = []string{
	"Zürich", "São Paulo", "Kraków", "Montréal", "Reykjavík", "Düsseldorf", "東京", "Málaga", "Portland",
	"Åarhus", "Seattle", "Köln",
}

var synthOpeners = []string{
	"Thanks for reaching out, %s!", "Hi %s, sorry about the trouble.", "Happy to help, %s.",
	"Good question, %s.", "Thanks for your patience, %s ☕.",
}

var synthAnswers = []string{
	"I checked the %s on order %s and the carrier scanned it yesterday evening; it should reach you within %d days.",
	"I've issued a refund for the duplicate charge on the %s (order %s); it will show on your statement in %d business days.",
	"You can swap the %s at any time from Account → Subscriptions; changes made before Thursday apply to order %s, and shipping stays free for the next %d deliveries.",
	"Our return window for the %s is 30 days from delivery, so order %s qualifies; I've emailed a prepaid label that stays valid for %d days.",
	"The %s works best with a medium-fine grind; order %s can ship pre-ground, and for a Moka pot I'd start at setting %d on our grinder and adjust from there.",
	"I've sent a replacement %s for order %s at no cost, and added a credit you can use within %d months.",
	"The price of the %s changed because green-coffee costs rose this season; order %s was billed at the new rate, but I can lock the old price for %d more deliveries.",
	"Wholesale orders for the %s start at 5 kg; order %s counts toward your tier, and bulk discounts begin at %d bags.",
}

var synthClosers = []string{
	"Is there anything else I can help with?", "Let me know if that works for you!", "Enjoy your coffee! 🚚☕",
	"Have a lovely day.", "Feel free to reply here if anything changes.",
}

var synthCode = []string{
	"Here's how to create the order with curl:\n\n```bash\ncurl -X POST https://api.tidewell.example/v1/orders \\\n  -H \"Authorization: Bearer $TIDEWELL_TOKEN\" \\\n  -H \"Content-Type: application/json\" \\\n  -d '{\"sku\": \"HL-ESP-5KG\", \"quantity\": 4}'\n```",
	"In Python:\n\n```python\nimport requests\n\nresp = requests.post(\n    \"https://api.tidewell.example/v1/orders\",\n    headers={\"Authorization\": f\"Bearer {token}\"},\n    json={\"sku\": \"HL-ESP-5KG\", \"quantity\": 4},\n    timeout=10,\n)\nresp.raise_for_status()\nprint(resp.json()[\"order_id\"])\n```",
	"With JavaScript (Node 20):\n\n```js\nconst res = await fetch(\"https://api.tidewell.example/v1/orders\", {\n\tmethod: \"POST\",\n\theaders: { Authorization: `Bearer ${token}`, \"Content-Type\": \"application/json\" },\n\tbody: JSON.stringify({ sku: \"HL-ESP-5KG\", quantity: 4 }),\n});\nif (!res.ok) throw new Error(`order failed: ${res.status}`);\n```",
	"If you hit the rate limit you'll get HTTP 429; back off like this:\n\n```go\nfor attempt := 0; attempt < 5; attempt++ {\n\tresp, err := client.Do(req)\n\tif err == nil && resp.StatusCode != 429 {\n\t\treturn resp, nil\n\t}\n\ttime.Sleep(time.Duration(1<<attempt) * time.Second)\n}\n```",
	"The tracking webhook sends this payload:\n\n```json\n{\"event\": \"shipment.updated\", \"order_id\": \"TW-104233\", \"status\": \"in_transit\", \"eta\": \"2025-03-14\"}\n```",
}
