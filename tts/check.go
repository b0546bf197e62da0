package tts

import (
	"fmt"
	"strings"
)

// Setting checks the constructors apply, exported so configuration validation
// applies the same rules and can name its own keys: a configuration that
// passes them is one the constructor accepts. Each error says what is wanted.

// CheckEdgeVoice accepts an Edge voice name: "en-US-AriaNeural" or the long
// form "Microsoft Server Speech Text to Speech Voice (en-US, AriaNeural)".
func CheckEdgeVoice(v string) error {
	_, err := edgeVoiceName(v)
	return err
}

// CheckEdgePercent accepts Edge rate and volume: a signed percentage like "+0%" or "-10%".
func CheckEdgePercent(v string) error {
	if !edgeRateRe.MatchString(v) {
		return fmt.Errorf("%q: want a signed percentage like \"+0%%\" or \"-10%%\"", truncate(v, 80))
	}
	return nil
}

// CheckEdgePitch accepts Edge pitch: signed hertz like "+0Hz" or "-5Hz".
func CheckEdgePitch(v string) error {
	if !edgePitchRe.MatchString(v) {
		return fmt.Errorf("%q: want signed hertz like \"+0Hz\" or \"-5Hz\"", truncate(v, 80))
	}
	return nil
}

// CheckAzureRegion accepts an Azure region like "westeurope".
func CheckAzureRegion(v string) error {
	if !azureRegionRe.MatchString(v) {
		return fmt.Errorf("%q: want a region like \"westeurope\" (lower-case letters and digits)", truncate(v, 80))
	}
	return nil
}

// CheckAzureVoice accepts an Azure voice like "en-US-AriaNeural".
func CheckAzureVoice(v string) error {
	if !azureVoiceRe.MatchString(v) {
		return fmt.Errorf("%q: want a voice like \"en-US-AriaNeural\"", truncate(v, 80))
	}
	return nil
}

// CheckAzureRate accepts an Azure prosody rate: "+10%", "-5%", "1.2" or x-slow…x-fast.
func CheckAzureRate(v string) error {
	if !azureRateRe.MatchString(v) {
		return fmt.Errorf("%q: want \"+10%%\", \"-5%%\", \"1.2\" or x-slow, slow, medium, fast, x-fast", truncate(v, 80))
	}
	return nil
}

// CheckHTTPBaseURL accepts the base URL of an HTTP provider (azure, openai):
// an absolute http:// or https:// URL without credentials.
func CheckHTTPBaseURL(v string) error {
	_, err := joinURL(v, "")
	return err
}

// CheckCommandVoice accepts a voice substituted for {voice} in a command:
// letters, digits and _.+:@-, not starting with a dash.
func CheckCommandVoice(v string) error {
	if !validCommandVoice(v) {
		return fmt.Errorf("%q: want a voice name of letters, digits and _.+:@- (not starting with - and without ..)", truncate(v, 80))
	}
	return nil
}

// CommandUsesVoice reports whether a split command line substitutes {voice}.
func CommandUsesVoice(argv []string) bool {
	for _, a := range argv[min(1, len(argv)):] {
		if strings.Contains(a, "{voice}") {
			return true
		}
	}
	return false
}
