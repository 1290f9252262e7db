package dataset

// Code names one kind of problem the validator finds. Codes are stable: the
// CLI, the API and stored reports use them as keys.
type Code string

// Errors: a line with any of these is not a training example.
const (
	CodeInvalidUTF8      Code = "invalid_utf8"      // the line is not valid UTF-8
	CodeInvalidJSON      Code = "invalid_json"      // the line is not one JSON value
	CodeNotObject        Code = "not_object"        // the line is JSON but not an object
	CodeMissingMessages  Code = "missing_messages"  // "messages" is absent or not an array
	CodeEmptyMessages    Code = "empty_messages"    // "messages" is an empty array
	CodeInvalidMessage   Code = "invalid_message"   // a message is not an object
	CodeInvalidRole      Code = "invalid_role"      // role missing, not a string, or not system, user or assistant
	CodeInvalidContent   Code = "invalid_content"   // content missing, null or not a string (multimodal arrays included)
	CodeEmptyContent     Code = "empty_content"     // content empty or only whitespace
	CodeSystemNotFirst   Code = "system_not_first"  // a system message after messages[0]
	CodeMissingAssistant Code = "missing_assistant" // no assistant message
	CodeInvalidWeight    Code = "invalid_weight"    // weight not the number 0 or 1, or on a non-assistant message
	CodeLineTooLong      Code = "line_too_long"     // the line is over Options.MaxLineBytes
)

// Errors of the ShareGPT format (FormatShareGPT). A turn's index is its
// message index: turn i becomes messages[i].
const (
	CodeShareGPTMissingConversations Code = "sharegpt_missing_conversations" // "conversations" is absent or not an array
	CodeShareGPTEmptyConversations   Code = "sharegpt_empty_conversations"   // "conversations" is an empty array
	CodeShareGPTInvalidTurn          Code = "sharegpt_invalid_turn"          // a turn is not an object
	CodeShareGPTUnknownRole          Code = "sharegpt_unknown_role"          // from missing, not a string, or not human, gpt, system, user or assistant
	CodeShareGPTInvalidValue         Code = "sharegpt_invalid_value"         // value missing, null or not a string
)

// Errors of the Alpaca format (FormatAlpaca).
const (
	CodeAlpacaMissingInstruction Code = "alpaca_missing_instruction" // "instruction" absent, null or not a string
	CodeAlpacaMissingOutput      Code = "alpaca_missing_output"      // "output" absent, null or not a string
	CodeAlpacaInvalidField       Code = "alpaca_invalid_field"       // "input" or "system" neither a string nor null
)

// Dataset-level errors, reported on line 0.
const (
	CodeEmptyFile      Code = "empty_file"       // no non-blank line at all
	CodeTooFewExamples Code = "too_few_examples" // fewer than MinExamples valid examples
)

// Warnings: the example is still trained on.
const (
	CodeUnknownKey       Code = "unknown_key"       // a key the trainer ignores, on the line or on a message
	CodeNonAlternating   Code = "non_alternating"   // two user or two assistant messages in a row
	CodeExampleTooLong   Code = "example_too_long"  // more tokens than max_seq_length: the trainer truncates it
	CodeDuplicateExample Code = "duplicate_example" // the same conversation appeared on an earlier line
	CodeNoTrainedTokens  Code = "no_trained_tokens" // every assistant message has weight 0
)

// Severity says whether an issue makes the dataset invalid.
type Severity string

// The two severities.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Severity returns the severity of code: warning for the warning codes,
// error for every other code.
func (c Code) Severity() Severity {
	switch c {
	case CodeUnknownKey, CodeNonAlternating, CodeExampleTooLong, CodeDuplicateExample, CodeNoTrainedTokens:
		return SeverityWarning
	}
	return SeverityError
}

// check is a code as the validator counts it: a small index into fixed
// arrays, so counting an issue costs no map update.
type check uint8

const (
	chkInvalidUTF8 check = iota
	chkInvalidJSON
	chkNotObject
	chkMissingMessages
	chkEmptyMessages
	chkInvalidMessage
	chkInvalidRole
	chkInvalidContent
	chkEmptyContent
	chkSystemNotFirst
	chkMissingAssistant
	chkInvalidWeight
	chkLineTooLong
	chkShareGPTMissingConversations
	chkShareGPTEmptyConversations
	chkShareGPTInvalidTurn
	chkShareGPTUnknownRole
	chkShareGPTInvalidValue
	chkAlpacaMissingInstruction
	chkAlpacaMissingOutput
	chkAlpacaInvalidField
	chkEmptyFile
	chkTooFewExamples
	chkUnknownKey
	chkNonAlternating
	chkExampleTooLong
	chkDuplicateExample
	chkNoTrainedTokens
	numChecks
)

var checkCodes = [numChecks]Code{
	chkInvalidUTF8:      CodeInvalidUTF8,
	chkInvalidJSON:      CodeInvalidJSON,
	chkNotObject:        CodeNotObject,
	chkMissingMessages:  CodeMissingMessages,
	chkEmptyMessages:    CodeEmptyMessages,
	chkInvalidMessage:   CodeInvalidMessage,
	chkInvalidRole:      CodeInvalidRole,
	chkInvalidContent:   CodeInvalidContent,
	chkEmptyContent:     CodeEmptyContent,
	chkSystemNotFirst:   CodeSystemNotFirst,
	chkMissingAssistant: CodeMissingAssistant,
	chkInvalidWeight:    CodeInvalidWeight,
	chkLineTooLong:      CodeLineTooLong,

	chkShareGPTMissingConversations: CodeShareGPTMissingConversations,
	chkShareGPTEmptyConversations:   CodeShareGPTEmptyConversations,
	chkShareGPTInvalidTurn:          CodeShareGPTInvalidTurn,
	chkShareGPTUnknownRole:          CodeShareGPTUnknownRole,
	chkShareGPTInvalidValue:         CodeShareGPTInvalidValue,
	chkAlpacaMissingInstruction:     CodeAlpacaMissingInstruction,
	chkAlpacaMissingOutput:          CodeAlpacaMissingOutput,
	chkAlpacaInvalidField:           CodeAlpacaInvalidField,

	chkEmptyFile:        CodeEmptyFile,
	chkTooFewExamples:   CodeTooFewExamples,
	chkUnknownKey:       CodeUnknownKey,
	chkNonAlternating:   CodeNonAlternating,
	chkExampleTooLong:   CodeExampleTooLong,
	chkDuplicateExample: CodeDuplicateExample,
	chkNoTrainedTokens:  CodeNoTrainedTokens,
}

func (c check) code() Code { return checkCodes[c] }

func (c check) severity() Severity { return checkCodes[c].Severity() }
