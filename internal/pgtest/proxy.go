package pgtest

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Proxy forwards connections to the server and can cut them silently, as
// a network that drops packets does: a connection cut is neither answered
// nor closed, ever — after the network heals, as after a router or a NAT
// forgot it — while new connections go through again once healed.
type Proxy struct {
	Port int
	ln   net.Listener
	to   string

	mu    sync.Mutex
	gen   int // connections of an older generation are cut
	cut   bool
	conns []net.Conn
}

// Proxy starts a proxy to the server, stopped when the test ends. DSN
// turns a DSN of the server into one through the proxy.
func (s *Server) Proxy(t testing.TB) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Port: ln.Addr().(*net.TCPAddr).Port, ln: ln, to: "127.0.0.1:" + strconv.Itoa(s.Port)}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

// DSN is dsn, of the server, through the proxy.
func (p *Proxy) DSN(dsn string) string {
	_, port, _ := net.SplitHostPort(p.to)
	return strings.Replace(dsn, "127.0.0.1:"+port, "127.0.0.1:"+strconv.Itoa(p.Port), 1)
}

// Cut stops forwarding: the connections open now are dead for good, and
// new ones are accepted but never answered until Heal.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.gen++
}

// Heal forwards new connections again; those Cut killed stay dead.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
	p.gen++ // those accepted while cut are dead too
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		gen, cut := p.gen, p.cut
		p.mu.Unlock()
		if cut {
			continue // held open, never answered
		}
		s, err := net.Dial("tcp", p.to)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, s)
		p.mu.Unlock()
		go p.pipe(c, s, gen)
		go p.pipe(s, c, gen)
	}
}

// pipe copies from one end to the other while the connection's
// generation is current; after, what comes is dropped.
func (p *Proxy) pipe(from, to net.Conn, gen int) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			p.mu.Lock()
			alive := p.gen == gen
			p.mu.Unlock()
			if alive {
				if _, err := to.Write(buf[:n]); err != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}
