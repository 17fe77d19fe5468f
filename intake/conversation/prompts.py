"""Everything the agent says, in one place, so that wording is reviewed like code.

Fixed prompts (no caller data in them) are listed in :data:`FIXED_PROMPTS` so that the voice
layer can synthesise them once per process and start them without a synthesis round trip.
"""

from __future__ import annotations

from intake.understanding.triage import CRISIS_GUIDANCE, EMERGENCY_GUIDANCE, RESTATEMENTS

GREETING = (
    "Thank you for calling {clinic}. This call is recorded for quality and for your records. "
    "I'm the clinic's automated assistant. If this is a medical emergency, please hang up and "
    "dial 9 1 1. You can ask for a person at any time, or press 0."
)
MENU = "How can I help you today? I can book, reschedule or cancel an appointment."
MENU_REPROMPT = "You can say book an appointment, reschedule, or cancel."

PATIENT_STATUS = "Have you been a patient with us before?"
VERIFY_DOB = (
    "I found a record for the number you're calling from. To protect your privacy, "
    "please tell me your date of birth."
)
DOB_MISMATCH = "I'm sorry, that doesn't match our records."
NOT_VERIFIED = (
    "I wasn't able to verify your identity, so I can't go further by phone. "
    "Someone from our front desk will call you back."
)
ASK_NAME = "Please tell me your first and last name."
ASK_DOB = "What is your date of birth?"
NOT_FOUND = "I couldn't find your record, so I'll take your details as a new patient."
CONFIRM_NAME = "I have {first} {last}, last name spelled {spelled}. Is that right?"
ASK_SPELLING = "Please spell your last name for me, one letter at a time."
CONFIRM_DOB = "Your date of birth is {date}. Is that correct?"
PHONE_SAME = "Is the number you're calling from the best number to reach you?"
ASK_PHONE = "What is the best phone number to reach you?"
ASK_EMAIL = "What email address should we use for confirmations? You can also say skip."
ASK_ADDRESS = "What is your home address, including the city and ZIP code?"

ASK_CARRIER = "What insurance do you have? If you're paying yourself, just say self-pay."
KEEP_CARRIER = "Do you still have {carrier} insurance?"
NOT_ACCEPTED = (
    "I'm sorry, we don't accept {carrier}. You can still be seen as a self-pay patient, or our "
    "staff can call you back about your options. Would you like to continue as self-pay?"
)
ASK_MEMBER_ID = (
    "What is your member ID? Please read it one character at a time, or enter the digits "
    "on your keypad followed by the pound key."
)
CONFIRM_MEMBER_ID = "I have {member_id}. Is that right?"
MEMBER_ID_LATER = "That's all right. Our staff will get it from you before your visit."

ASK_REASON = "Briefly, what is the reason for your visit?"
ASK_PROVIDER = "Would you like to see a particular provider, or is anyone fine? We have {names}."
ASK_DAY = "What day and time of day works best for you? For example, Tuesday morning."
OFFER = "I have {options}. Which would you like? You can also press 1, 2 or 3."
OFFER_ONE = "The next time I have is {option}. Would you like it?"
NOTHING_THEN = "I don't have anything open then. "
CONFIRM_BOOKING = "To confirm: {type} with {provider} on {when}. Shall I book it?"
SLOT_TAKEN = "I'm sorry, that time was just taken by another caller. "
NO_SLOTS = (
    "I'm sorry, I don't have any open appointments in the coming weeks. Our front desk will "
    "call you back to find a time."
)
BOOKED = "You're booked for {when} with {provider}. {instructions}"
CONFIRMATION_SENT = "We'll send you a confirmation."

FOUND_APPOINTMENT = "I see your appointment on {when} with {provider}. "
CONFIRM_CANCEL = "Would you like me to cancel it?"
CONFIRM_RESCHEDULE = "Would you like to move it to another time?"
CANCELLED = "Your appointment on {when} is cancelled."
RESCHEDULED = "Your appointment is moved to {when} with {provider}."
NO_APPOINTMENT = "I don't see an upcoming appointment for you. Would you like to book one?"
KEPT = "All right, I've left your appointment as it is."

ANYTHING_ELSE = "Is there anything else I can help you with?"
GOODBYE = "Thank you for calling. Goodbye."
CALLBACK_GOODBYE = "I'll ask our front desk to call you back. Thank you for calling, and goodbye."

TRANSFER = "One moment, I'm transferring you to our front desk."
CLOSED_CALLBACK = (
    "Our front desk is closed right now. I've asked them to call you back when they open. "
    "Thank you for calling, and goodbye."
)

# When the agent itself fails (its database is unreachable, a bug): the caller is never left
# in silence. Said by the voice session, which needs no database to speak.
ONE_MOMENT = "One moment, please."
TROUBLE_TRANSFER = (
    "I'm sorry, I'm having trouble with our system. I'm putting you through to our front desk now."
)
TROUBLE_CALLBACK = (
    "I'm sorry, I'm having trouble with our system, and our front desk is closed right now. "
    "They will call you back as soon as they open. If this is an emergency, please hang up and "
    "dial 9 1 1. Goodbye."
)

DIDNT_CATCH = "Sorry, I didn't catch that. "
STILL_THERE = "Are you still there? "
TOO_MANY_SILENCES = "I haven't been able to hear you. Our front desk will call you back. Goodbye."
TOO_MANY_MISSES = (
    "I'm having trouble understanding. Our front desk will call you back to help. Goodbye."
)

# Read after the red-flag guidance of intake.understanding.triage.
STAFF_ALERTED = "I've also let our staff know."
# A red flag that may have been misheard (intake.conversation.red_flags). {what} is one of
# triage.RESTATEMENTS, never the caller's words; a clear no resumes with MISHEARD.
CONFIRM_RED_FLAG = "Did you say {what}?"
MISHEARD = "Sorry, I misheard you."

FIXED_PROMPTS = (
    MENU,
    MENU_REPROMPT,
    PATIENT_STATUS,
    VERIFY_DOB,
    DOB_MISMATCH,
    NOT_VERIFIED,
    ASK_NAME,
    ASK_DOB,
    NOT_FOUND,
    ASK_SPELLING,
    PHONE_SAME,
    ASK_PHONE,
    ASK_EMAIL,
    ASK_ADDRESS,
    ASK_CARRIER,
    ASK_MEMBER_ID,
    MEMBER_ID_LATER,
    ASK_REASON,
    ASK_DAY,
    NO_SLOTS,
    CONFIRM_CANCEL,
    CONFIRM_RESCHEDULE,
    NO_APPOINTMENT,
    KEPT,
    ANYTHING_ELSE,
    GOODBYE,
    CALLBACK_GOODBYE,
    TRANSFER,
    CLOSED_CALLBACK,
    TOO_MANY_SILENCES,
    TOO_MANY_MISSES,
    ONE_MOMENT,
    TROUBLE_TRANSFER,
    TROUBLE_CALLBACK,
    f"{EMERGENCY_GUIDANCE} {STAFF_ALERTED}",
    f"{CRISIS_GUIDANCE} {STAFF_ALERTED}",
    *(CONFIRM_RED_FLAG.format(what=what) for what in RESTATEMENTS),
)
