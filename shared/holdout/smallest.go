package holdout

// Smallest keeps, of the lines added to it, the values of the at most
// Cap lines with the smallest keys: a bounded max-heap, so that a
// streaming pass over any number of lines holds Cap entries. Added keys
// must be distinct (keys of distinct lines under one seed are).
type Smallest[T any] struct {
	cap  int
	heap []entry[T] // a max-heap on key: heap[0] is the largest kept
}

type entry[T any] struct {
	key Key
	val T
}

// NewSmallest returns an empty Smallest that keeps at most cap values.
func NewSmallest[T any](cap int) *Smallest[T] {
	return &Smallest[T]{cap: max(cap, 0), heap: make([]entry[T], 0, max(cap, 0))}
}

// Add offers the value of the line whose key is k.
func (s *Smallest[T]) Add(k Key, v T) {
	switch {
	case len(s.heap) < s.cap:
		s.heap = append(s.heap, entry[T]{k, v})
		s.up(len(s.heap) - 1)
	case s.cap > 0 && k.Compare(s.heap[0].key) < 0:
		s.heap[0] = entry[T]{k, v}
		s.down(0)
	}
}

// Len is how many values are kept.
func (s *Smallest[T]) Len() int { return len(s.heap) }

// Sorted returns the kept values, smallest key first. s is unchanged.
func (s *Smallest[T]) Sorted() []T {
	h := &Smallest[T]{cap: s.cap, heap: append([]entry[T](nil), s.heap...)}
	out := make([]T, len(h.heap))
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = h.heap[0].val
		last := len(h.heap) - 1
		h.heap[0] = h.heap[last]
		h.heap = h.heap[:last]
		h.down(0)
	}
	return out
}

func (s *Smallest[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if s.heap[p].key.Compare(s.heap[i].key) >= 0 {
			return
		}
		s.heap[p], s.heap[i] = s.heap[i], s.heap[p]
		i = p
	}
}

func (s *Smallest[T]) down(i int) {
	n := len(s.heap)
	for {
		big := i
		if l := 2*i + 1; l < n && s.heap[l].key.Compare(s.heap[big].key) > 0 {
			big = l
		}
		if r := 2*i + 2; r < n && s.heap[r].key.Compare(s.heap[big].key) > 0 {
			big = r
		}
		if big == i {
			return
		}
		s.heap[big], s.heap[i] = s.heap[i], s.heap[big]
		i = big
	}
}
