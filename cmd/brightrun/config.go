package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// Defaults: the local stack's address and development token.
const (
	defaultAPIURL = "http://127.0.0.1:8080"
	defaultToken  = "dev-token"
)

// fileConfig is the config file: the user's config dir/brightrun/config.json.
type fileConfig struct {
	APIURL string `json:"api_url,omitempty"`
	Token  string `json:"token,omitempty"`
}

// setting is a resolved value and where it came from.
type setting struct {
	Value  string `json:"value"`
	Source string `json:"source"` // flag, env, file or default
}

type settings struct {
	APIURL setting `json:"api_url"`
	Token  setting `json:"token"`
	File   string  `json:"file"`
}

func configPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the config folder: %w", err)
	}
	return filepath.Join(dir, "brightrun", "config.json"), nil
}

func loadConfig(path string) (fileConfig, error) {
	var c fileConfig
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("config file %s is not valid JSON: %w (fix or delete it)", path, err)
	}
	return c, nil
}

// saveConfig writes the config file readable by its owner only.
func saveConfig(path string, c fileConfig) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create config folder: %w", err)
	}
	data, _ := json.MarshalIndent(c, "", "  ")
	return writeFileAtomic(path, append(data, '\n'), 0o600)
}

// writeFileAtomic writes data to a temporary file beside path, then
// renames it into place.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// settings resolves the API address and token: flag, then environment,
// then config file, then default.
func (a *app) settings() (settings, error) {
	path, err := configPath()
	if err != nil {
		return settings{}, err
	}
	fc, err := loadConfig(path)
	if err != nil {
		return settings{}, err
	}
	pick := func(flag, env, file, def string) setting {
		switch {
		case flag != "":
			return setting{flag, "flag"}
		case a.getenv(env) != "":
			return setting{a.getenv(env), "env " + env}
		case file != "":
			return setting{file, "config file"}
		}
		return setting{def, "default"}
	}
	s := settings{
		APIURL: pick(a.apiURL, "BRIGHTRUN_API_URL", fc.APIURL, defaultAPIURL),
		Token:  pick(a.token, "BRIGHTRUN_TOKEN", fc.Token, defaultToken),
		File:   path,
	}
	if err := checkAPIURL(s.APIURL.Value); err != nil {
		return s, fmt.Errorf("API URL from %s: %w", s.APIURL.Source, err)
	}
	s.APIURL.Value = strings.TrimRight(s.APIURL.Value, "/")
	return s, nil
}

func checkAPIURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL", raw)
	}
	return nil
}

// maskToken shows enough of a token to recognise it.
func maskToken(tok string) string {
	if len(tok) < 12 {
		return strings.Repeat("*", len(tok))
	}
	return tok[:4] + "…" + tok[len(tok)-4:]
}

// configKey maps the accepted spellings of a key to its JSON name.
func configKey(k string) (string, bool) {
	switch strings.ReplaceAll(strings.ToLower(k), "-", "_") {
	case "api_url", "url":
		return "api_url", true
	case "token":
		return "token", true
	}
	return "", false
}

func (a *app) configCommand() *cobra.Command {
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the API address and token in use, and where each comes from",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.configShow()
		},
	}
	set := &cobra.Command{
		Use:   "set KEY VALUE",
		Short: "Store api_url or token in the config file (VALUE - reads it from stdin)",
		Long: `Store a setting in the config file (the user's config folder, brightrun/config.json,
readable by its owner only). Keys: api_url, token. A VALUE of - is read from
standard input, so that a token stays out of the shell history.
BRIGHTRUN_API_URL and BRIGHTRUN_TOKEN, and the --api-url and --token flags,
override the file.`,
		Example: "  brightrun config set api_url https://api.example.com\n  echo \"$TOKEN\" | brightrun config set token -",
		Args:    exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.configSet(cmd, args[0], args[1])
		},
	}
	unset := &cobra.Command{
		Use:   "unset KEY",
		Short: "Remove api_url or token from the config file",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.configSet(cmd, args[0], "")
		},
	}
	c := &cobra.Command{
		Use:   "config [set KEY VALUE | unset KEY | show]",
		Short: "Show or set the API address and token",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.configShow()
		},
	}
	c.AddCommand(show, set, unset)
	return c
}

func (a *app) configShow() error {
	s, err := a.settings()
	if err != nil {
		return err
	}
	if s.Token.Source != "default" {
		s.Token.Value = maskToken(s.Token.Value)
	}
	if a.jsonOut {
		return a.printJSON(s)
	}
	tw := newTable(a.stdout)
	fmt.Fprintf(tw, "api_url\t%s\t(%s)\n", s.APIURL.Value, s.APIURL.Source)
	fmt.Fprintf(tw, "token\t%s\t(%s)\n", s.Token.Value, s.Token.Source)
	fmt.Fprintf(tw, "config file\t%s\t\n", s.File)
	return tw.Flush()
}

func (a *app) configSet(cmd *cobra.Command, key, value string) error {
	k, ok := configKey(key)
	if !ok {
		return usagef(cmd, "unknown key %q: use api_url or token", key)
	}
	if value == "-" {
		line, err := bufio.NewReader(a.stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("read %s from stdin: %w", k, err)
		}
		value = strings.TrimSpace(line)
		if value == "" {
			return usagef(cmd, "no %s on stdin", k)
		}
	}
	if k == "api_url" && value != "" {
		if err := checkAPIURL(value); err != nil {
			return usagef(cmd, "api_url: %v", err)
		}
		value = strings.TrimRight(value, "/")
	}
	path, err := configPath()
	if err != nil {
		return err
	}
	fc, err := loadConfig(path)
	if err != nil {
		return err
	}
	switch k {
	case "api_url":
		fc.APIURL = value
	case "token":
		fc.Token = value
	}
	if err := saveConfig(path, fc); err != nil {
		return err
	}
	shown := value
	if k == "token" {
		shown = maskToken(value)
	}
	if a.jsonOut {
		return a.printJSON(map[string]string{"key": k, "value": shown, "file": path})
	}
	if value == "" {
		fmt.Fprintf(a.stdout, "removed %s from %s\n", k, path)
	} else {
		fmt.Fprintf(a.stdout, "%s = %s (saved in %s)\n", k, shown, path)
	}
	for _, env := range []string{"BRIGHTRUN_API_URL", "BRIGHTRUN_TOKEN"} {
		if (k == "api_url") == (env == "BRIGHTRUN_API_URL") && a.getenv(env) != "" {
			a.note("note: %s is set and overrides the config file", env)
		}
	}
	return nil
}
