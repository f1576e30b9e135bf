// Package info is the test app's server: it reports what the container saw (path,
// args, env, build settings) as JSON and echoes websocket text messages at /ws.
package info

import (
	"bufio"
	"crypto/sha1"
	"embed"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

//go:embed static
var static embed.FS

// Serve answers on 0.0.0.0:$PORT; `main` names the package that was built.
func Serve(main string) {
	port := os.Getenv("PORT")
	if port == "" {
		log.Fatal("PORT is not set")
	}
	http.HandleFunc("/ws", echo)
	files, _ := fs.Sub(static, "static")
	http.Handle("/static/", http.StripPrefix("/static/", http.FileServer(http.FS(files))))
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		settings := map[string]string{}
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				settings[s.Key] = s.Value
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"app":              "go",
			"main":             main,
			"path":             r.URL.RequestURI(),
			"args":             os.Args[1:],
			"go":               runtime.Version(),
			"cgo_enabled":      settings["CGO_ENABLED"],
			"user":             os.Getuid(),
			"port":             port,
			"cl_app_path":      os.Getenv("CL_APP_PATH"),
			"forwarded_prefix": r.Header.Get("X-Forwarded-Prefix"),
		})
	})
	log.Printf("orun go sample (%s) on :%s, args %q", main, port, os.Args[1:])
	log.Fatal(http.ListenAndServe(":"+port, nil))
}

// echo is a minimal RFC 6455 websocket (the standard library has none): it answers
// each text message with "echo: " + message, and a close with a close.
func echo(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		http.Error(w, "websocket only", http.StatusBadRequest)
		return
	}
	conn, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
		"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")
	if rw.Flush() != nil {
		return
	}
	for {
		op, payload, err := readFrame(rw.Reader)
		if err != nil {
			return
		}
		switch op {
		case 1: // text
			if writeFrame(conn, 1, append([]byte("echo: "), payload...)) != nil {
				return
			}
		case 8: // close: answer with the same code
			_ = writeFrame(conn, 8, payload)
			return
		case 9: // ping
			_ = writeFrame(conn, 10, payload)
		}
	}
}

func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var head [2]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, nil, err
	}
	if head[0]&0x80 == 0 {
		return 0, nil, errors.New("fragmented frames are not supported")
	}
	n := uint64(head[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<20 {
		return 0, nil, errors.New("frame too large")
	}
	var mask [4]byte
	masked := head[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return head[0] & 0x0f, payload, nil
}

func writeFrame(c net.Conn, op byte, payload []byte) error {
	head := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		head = append(head, byte(n))
	case n < 1<<16:
		head = append(head, 126, byte(n>>8), byte(n))
	default:
		head = append(head, 127)
		head = binary.BigEndian.AppendUint64(head, uint64(n))
	}
	_, err := c.Write(append(head, payload...))
	return err
}
