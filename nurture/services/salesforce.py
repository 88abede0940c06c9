"""Salesforce Outbound Messages: the SOAP notification read safely, checked against our
organization, mapped to the product's events, and acknowledged (``POST /webhooks/salesforce``).

An Outbound Message (Salesforce's "Understanding the Outbound Messaging WSDL") is a SOAP 1.1
envelope whose body is ``notifications`` (namespace ``http://soap.sforce.com/2005/09/outbound``)
with the sending ``OrganizationId``, the ``ActionId`` of the rule, and up to 100
``Notification`` elements, each an ``Id`` (the same when Salesforce sends it again) and an
``sObject`` of ``xsi:type="sf:Lead"`` (or ``sf:Opportunity``) with the fields the admin chose.
Salesforce takes the message as delivered only when the answer is a ``notificationsResponse``
with ``<Ack>true</Ack>``; anything else, it sends again (for up to 24 hours).

The XML is parsed with defusedxml: no DTDs, no entity expansion, no external references.
The organization must be ``NURTURE_SALESFORCE_ORG_ID`` (15 or 18 characters). The Lead's Id
is the lead id.

========================================  ===============================================
Salesforce                                product event
========================================  ===============================================
Lead fields                               ``lead.updated``: Email, FirstName, LastName,
                                          Company, Title, Phone, Country / CountryCode,
                                          Industry, NumberOfEmployees, LeadSource; other
                                          fields to ``fields.<Name>``
Lead HasOptedOutOfEmail = true            ``lead.unsubscribed``
Lead IsConverted + ConvertedOpportunityId links the opportunity to the lead
Opportunity StageName Closed Won          ``opportunity.won``
Opportunity StageName Closed Lost         ``opportunity.lost``, data.reason from
  (or IsClosed/IsWon)                     Loss_Reason__c (or Lost_Reason__c,
                                          Reason_Lost__c, Closed_Lost_Reason__c); for the
                                          lead named by Nurture_Lead_Id__c or the lead it
                                          was converted from
========================================  ===============================================
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element  # the type only: parsing is defusedxml's
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from nurture.services.crm_inbound import Ignored, Incoming, Link, Mapped, Outcome

SOURCE = "salesforce"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100

LEAD_FIELDS = {
    "Email": "email",
    "FirstName": "first_name",
    "LastName": "last_name",
    "Company": "company",
    "Title": "title",
    "Phone": "phone",
    "Industry": "industry",
    "NumberOfEmployees": "employees",
    "LeadSource": "source",
}
# Fields every sObject may carry that say nothing about the lead.
SYSTEM_FIELDS = frozenset(
    {
        "Id",
        "IsDeleted",
        "CreatedDate",
        "CreatedById",
        "LastModifiedDate",
        "LastModifiedById",
        "SystemModstamp",
        "LastActivityDate",
        "LastViewedDate",
        "LastReferencedDate",
        "OwnerId",
        "IsConverted",
        "ConvertedDate",
        "ConvertedOpportunityId",
        "ConvertedContactId",
        "ConvertedAccountId",
        "HasOptedOutOfEmail",
        "MasterRecordId",
    }
)
LOSS_REASON_FIELDS = ("Loss_Reason__c", "Lost_Reason__c", "Reason_Lost__c", "Closed_Lost_Reason__c")
LEAD_ID_FIELD = "Nurture_Lead_Id__c"
WON_STAGE = "closed won"
LOST_STAGE = "closed lost"


class NotificationError(Exception):
    """A message that is not an Outbound Message: ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child(element: Element, name: str) -> Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _text(element: Element | None) -> str | None:
    if element is None or element.get(f"{{{XSI_NS}}}nil") == "true":
        return None
    return (element.text or "").strip()


def parse(body: bytes) -> tuple[str, list[Element]]:
    """The organization id and the ``Notification`` elements of an Outbound Message.

    Raises:
        NotificationError: naming the element that is missing or wrong.
    """
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException) as exc:
        raise NotificationError("(body)", f"not a well-formed SOAP message: {exc}") from None
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise NotificationError("Envelope", "not a SOAP 1.1 envelope")
    envelope_body = root.find(f"{{{SOAP_NS}}}Body")
    if envelope_body is None:
        raise NotificationError("Envelope.Body", "missing")
    notifications = envelope_body.find(f"{{{OUTBOUND_NS}}}notifications")
    if notifications is None:
        raise NotificationError("Body.notifications", "not an Outbound Message")
    org = _text(notifications.find(f"{{{OUTBOUND_NS}}}OrganizationId"))
    if not org:
        raise NotificationError("notifications.OrganizationId", "missing")
    items = notifications.findall(f"{{{OUTBOUND_NS}}}Notification")
    if not 1 <= len(items) <= MAX_NOTIFICATIONS:
        raise NotificationError(
            "notifications.Notification", f"1 to {MAX_NOTIFICATIONS} notifications"
        )
    return org, items


def same_org(given: str, configured: str) -> bool:
    """Whether two organization ids name one org (an 18-character id is the 15-character one
    with a case-safe suffix)."""
    return given.strip()[:15] == configured.strip()[:15] and len(given.strip()) in (15, 18)


def map_notifications(items: list[Element]) -> Mapped:
    """The notifications as product events, links and outcomes (every problem collected)."""
    mapped = Mapped()
    for index, item in enumerate(items):
        notification_id = _text(_child(item, "Id"))
        if not notification_id:
            mapped.problems.append(([index, "Id"], "Field required"))
            continue
        sobject = _child(item, "sObject")
        if sobject is None:
            mapped.problems.append(([index, "sObject"], "Field required"))
            continue
        kind = (sobject.get(f"{{{XSI_NS}}}type") or "").rpartition(":")[2]
        fields: dict[str, str | None] = {_local(f.tag): _text(f) for f in sobject}
        record_id = fields.get("Id")
        if not record_id:
            mapped.problems.append(([index, "sObject", "Id"], "Field required"))
            continue
        event_id = f"salesforce-{notification_id}"
        when = fields.get("LastModifiedDate") or fields.get("SystemModstamp")
        if kind == "Lead":
            _lead(mapped, index, event_id, record_id, when, fields)
        elif kind == "Opportunity":
            _opportunity(mapped, index, event_id, record_id, when, fields)
        else:
            mapped.ignored.append(Ignored(index, f"sObject {kind or '?'}: not used by the product"))
    return mapped


def _origin(field: str) -> str:
    return f"sObject.{field}"


def _lead(
    mapped: Mapped,
    index: int,
    event_id: str,
    lead_id: str,
    when: str | None,
    fields: dict[str, str | None],
) -> None:
    data: dict[str, Any] = {}
    origin = {"lead_id": _origin("Id"), "occurred_at": _origin("LastModifiedDate")}
    free: dict[str, Any] = {}
    for name, value in fields.items():
        if name in SYSTEM_FIELDS:
            continue
        if name in ("Country", "CountryCode"):
            if value and len(value) == 2 and value.isalpha():
                data["country"] = value.upper()
                origin["country"] = _origin(name)
            elif name == "Country":
                free["Country"] = value
            continue
        target = LEAD_FIELDS.get(name)
        if target is None:
            free[name] = value
            continue
        origin[target] = _origin(name)
        if target == "employees" and value:
            data[target] = int(value) if value.isdigit() else value  # a non-number is refused
        else:
            data[target] = value or None
    if free:
        data["fields"] = free
        origin["fields"] = "sObject"
    mapped.events.append(
        Incoming(
            index,
            {
                "id": event_id,
                "type": "lead.updated",
                "lead_id": lead_id,
                "occurred_at": when,
                "data": data,
            },
            origin,
        )  # fmt: skip
    )
    if (fields.get("HasOptedOutOfEmail") or "").lower() == "true":
        mapped.events.append(
            Incoming(
                index,
                {
                    "id": f"{event_id}~optout",
                    "type": "lead.unsubscribed",
                    "lead_id": lead_id,
                    "occurred_at": when,
                    "data": {"via": "Salesforce HasOptedOutOfEmail"},
                },
                origin,
            )  # fmt: skip
        )
    opportunity = fields.get("ConvertedOpportunityId")
    if (fields.get("IsConverted") or "").lower() == "true" and opportunity:
        mapped.links.append(Link(SOURCE, "opportunity", opportunity, lead_id))


def _opportunity(
    mapped: Mapped,
    index: int,
    event_id: str,
    opportunity_id: str,
    when: str | None,
    fields: dict[str, str | None],
) -> None:
    stage = (fields.get("StageName") or "").strip().lower()
    closed = (fields.get("IsClosed") or "").lower() == "true"
    won_flag = (fields.get("IsWon") or "").lower() == "true"
    if stage == WON_STAGE or (closed and won_flag):
        kind = "opportunity.won"
    elif stage == LOST_STAGE or (closed and not won_flag and "IsWon" in fields):
        kind = "opportunity.lost"
    else:
        shown = fields.get("StageName") or "an open stage"
        mapped.ignored.append(Ignored(index, f"opportunity at {shown}: not an outcome"))
        return
    data: dict[str, Any] = {"opportunity": opportunity_id}
    if kind == "opportunity.lost":
        reason = next((fields[f] for f in LOSS_REASON_FIELDS if fields.get(f)), None)
        if reason:
            data["reason"] = reason[:200]
    named = fields.get(LEAD_ID_FIELD)
    mapped.outcomes.append(
        Outcome(
            index=index,
            id=event_id,
            source=SOURCE,
            object_type="opportunity",
            object_id=opportunity_id,
            type=kind,
            occurred_at=when,
            data=data,
            lead_ids=[named] if named else [],
        )
    )


ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_NS}">'
    "<soapenv:Body>"
    f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body>"
    "</soapenv:Envelope>"
)


def fault(message: str, *, server: bool = False) -> str:
    """A SOAP 1.1 Fault: Salesforce shows its text in the message's delivery status and
    sends the message again later."""
    code = "soapenv:Server" if server else "soapenv:Client"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_NS}">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>{code}</faultcode><faultstring>{escape(message)}</faultstring>"
        "</soapenv:Fault></soapenv:Body>"
        "</soapenv:Envelope>"
    )
