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

// apiError turns a client error into the one line printed for the user.
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

// callAPI sends one request to the API and prints the response: as JSON
// with --output json, otherwise with text. It is the body of every client
// command that makes a single call.
func callAPI[T any](cmd *cobra.Command, output, what, method, path string, body any, text func(w io.Writer, resp T) error) error {
	if err := checkOutput(output); err != nil {
		return err
	}
	c, err := newAPIClient()
	if err != nil {
		return err
	}
	var resp T
	if err := c.Do(cmd.Context(), method, path, body, &resp); err != nil {
		return apiError(what, err)
	}
	if output == outputJSON {
		return printJSON(cmd.OutOrStdout(), resp)
	}
	return text(cmd.OutOrStdout(), resp)
}
