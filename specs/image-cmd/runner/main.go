// The image-cmd runner: a small web page that runs ONE fixed command in this container
// (built FROM the image the admin chose) and shows its output.
//
// The command comes from the `command` env var, which orun sets from the app's param at
// create time; nothing a request carries (query, form, body, headers) reaches it. It is
// a static binary, so it runs in any image, with or without a shell or an interpreter,
// and the app never needs access to the container engine: the command runs here,
// inside the app's own container, as its non-root user.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxOutput caps what one run keeps (the rest is counted, not stored).
const maxOutput = 256 << 10

type result struct {
	Command   string  `json:"command"`
	ExitCode  int     `json:"exit_code"`
	Output    string  `json:"output"`
	Truncated bool    `json:"truncated"`
	Seconds   float64 `json:"seconds"`
	Error     string  `json:"error,omitempty"`
}

type runner struct {
	command string
	image   string
	title   string
	timeout time.Duration
	slot    chan struct{} // one run at a time
}

// limited keeps the first maxOutput bytes written to it.
type limited struct {
	buf       bytes.Buffer
	truncated bool
}

func (l *limited) Write(p []byte) (int, error) {
	if room := maxOutput - l.buf.Len(); room < len(p) {
		l.truncated = true
		if room > 0 {
			l.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return l.buf.Write(p)
}

// argv runs the command through /bin/sh when the image has one (pipes, quotes), else
// splits it on spaces and runs the program directly (images without a shell).
func argv(command string) []string {
	if _, err := os.Stat("/bin/sh"); err == nil {
		return []string{"/bin/sh", "-c", command}
	}
	return strings.Fields(command)
}

func (r *runner) run(ctx context.Context) result {
	select {
	case r.slot <- struct{}{}:
		defer func() { <-r.slot }()
	case <-ctx.Done():
		return result{Command: r.command, ExitCode: -1, Error: "the client went away"}
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	args := argv(r.command)
	res := result{Command: r.command}
	if len(args) == 0 {
		res.ExitCode, res.Error = -1, "no command configured (set the command param)"
		return res
	}
	cmd := exec.Command(args[0], args[1:]...)
	out := &limited{}
	cmd.Stdout, cmd.Stderr, cmd.Dir = out, out, "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	started := time.Now()
	err := cmd.Start()
	if err == nil {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the whole group
			err = <-done
			res.Error = fmt.Sprintf("stopped after %s", r.timeout)
		}
	}
	res.Seconds = time.Since(started).Seconds()
	res.Output, res.Truncated = out.buf.String(), out.truncated
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
	default:
		res.ExitCode, res.Error = -1, err.Error()
	}
	return res
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}
pre{background:#f4f4f4;padding:1rem;overflow:auto}code{background:#f4f4f4}</style></head>
<body><h1>{{.Title}}</h1>
<p>Runs <code id="command">{{.Command}}</code> in <code id="image">{{.Image}}</code>.</p>
<form method="post" action="{{.Action}}"><button id="run" type="submit">Run</button></form>
{{with .Result}}<h2 id="status">Exit code {{.ExitCode}} in {{printf "%.2f" .Seconds}} s{{if .Error}} ({{.Error}}){{end}}</h2>
<pre id="output">{{.Output}}</pre>{{if .Truncated}}<p>Output cut at 256 KiB.</p>{{end}}{{end}}
</body></html>
`))

func (r *runner) show(w http.ResponseWriter, base string, res *result) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	err := page.Execute(w, map[string]any{
		"Title": r.title, "Command": r.command, "Image": r.image,
		"Action": base + "/run", "Result": res,
	})
	if err != nil {
		log.Printf("page: %v", err)
	}
}

func main() {
	timeout, err := strconv.Atoi(os.Getenv("timeout_secs"))
	if err != nil || timeout <= 0 {
		timeout = 30
	}
	r := &runner{
		command: os.Getenv("command"), image: os.Getenv("image"),
		title: os.Getenv("app_name"), timeout: time.Duration(timeout) * time.Second,
		slot: make(chan struct{}, 1),
	}
	if r.title == "" {
		r.title = "Run a command"
	}
	base := os.Getenv("CL_APP_PATH") // links are absolute: the app path is stripped
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/" {
			http.NotFound(w, req)
			return
		}
		r.show(w, base, nil)
	})
	mux.HandleFunc("/run", func(w http.ResponseWriter, req *http.Request) {
		// POST only, so crawlers and prefetches never run it; the request's query and
		// body are never read
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "POST to run the command", http.StatusMethodNotAllowed)
			return
		}
		// a page on another site cannot make a visitor's browser start runs
		if req.Header.Get("Sec-Fetch-Site") == "cross-site" {
			http.Error(w, "runs start from this app's own page", http.StatusForbidden)
			return
		}
		res := r.run(req.Context())
		log.Printf("ran %q: exit code %d in %.2f s", r.command, res.ExitCode, res.Seconds)
		if strings.Contains(req.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(res)
			return
		}
		r.show(w, base, &res)
	})
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	server := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(ctx)
	}()
	log.Printf("runner on :%s for %q", port, r.command)
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
