package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"ward.dev/ward/internal/client"
)

// silentError ends a command with exit code 1 after the command has already
// printed its result (for example a "deny" from policy check).
type silentError struct{}

func (silentError) Error() string { return "" }

func newAPIClient() (*client.Client, error) {
	return client.New(client.FromEnv())
}

// addOutputFlag adds --output to a command that prints data.
func addOutputFlag(cmd *cobra.Command, output *string) {
	cmd.Flags().StringVarP(output, "output", "o", outputText, "output `format`: text or json")
}

func checkOutput(output string) error {
	if output != outputText && output != outputJSON {
		return usagef("invalid --output %q, want text or json", output)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// apiError turns a client error into the one line the user sees.
func apiError(what string, err error) error {
	var e *client.Error
	if errors.As(err, &e) {
		return fmt.Errorf("%s: %s", what, e.Message)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func jsonUnmarshal(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}
